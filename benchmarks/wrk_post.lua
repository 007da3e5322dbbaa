-- JSON POST for benchmarks/serving.py. The path comes from the URL, the body from $BENCH_BODY.
-- No request() or response() function: wrk then sends one pre-built request and skips parsing
-- response headers and bodies in Lua, which keeps the load generator cheap.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or error("set BENCH_BODY to the JSON request body")
wrk.headers["Content-Type"] = "application/json"

-- done() runs once, after wrk has applied its coordinated-omission correction to `latency`.
-- Print the raw totals and the whole (corrected) histogram; _wrk.uncorrect() removes the synthetic samples.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_SUMMARY %d %d %d %d %d %d %d %d\n",
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("BENCH_HIST %d %d\n", value, count))
  end
end
