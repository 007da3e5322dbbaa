"""``modalkit serve`` app file for the streaming pipeline (the short form: a ServiceSpec)."""

from stream_pipeline import TokenStream  # type: ignore[import-not-found]

from modalkit_serve import ServiceSpec

service = ServiceSpec(TokenStream)
