"""The OCR pipeline in process: real PP-OCRv4 models reading text that the test drew."""

from __future__ import annotations

import io

import pytest
from images import text_image
from ocr_model import MAX_SIDE, ImageInput, OcrOutput, OcrPipeline
from PIL import Image

from modalkit_pipeline import ItemError


@pytest.fixture(scope="module")
def pipeline() -> OcrPipeline:
    return OcrPipeline("ocr", "", {})


def run(pipeline: OcrPipeline, *items: ImageInput) -> list[OcrOutput | ItemError]:
    return pipeline.run_inference(list(items))


def test_it_reads_the_lines_of_an_image_top_to_bottom(pipeline: OcrPipeline) -> None:
    [out] = run(pipeline, ImageInput(image=text_image(["modalkit reads text", "Invoice 2026-12-03"])))

    assert isinstance(out, OcrOutput)
    assert out.text == "modalkit reads text\nInvoice 2026-12-03"
    assert [line.text for line in out.lines] == ["modalkit reads text", "Invoice 2026-12-03"]
    assert all(line.score > 0.9 for line in out.lines)
    first, second = out.lines
    assert first.box[0][1] < second.box[0][1]  # boxes are in the image's pixels, top line first
    assert (out.width, out.height) == (640, 40 + 72 * 2)


def test_a_jpeg_reads_the_same(pipeline: OcrPipeline) -> None:
    [out] = run(pipeline, ImageInput(image=text_image(["Batch of one"], fmt="JPEG")))

    assert isinstance(out, OcrOutput)
    assert out.text == "Batch of one"


def test_a_file_that_is_not_an_image_fails_alone(pipeline: OcrPipeline) -> None:
    good = ImageInput(image=text_image(["first"]))
    results = run(pipeline, good, ImageInput(image=b"%PDF-1.7 not an image"), ImageInput(image=text_image(["third"])))

    assert isinstance(results[0], OcrOutput)
    assert results[0].text == "first"
    assert isinstance(results[1], ItemError)
    assert results[1].index == 1
    assert "not an image file" in results[1].error
    assert isinstance(results[2], OcrOutput)
    assert results[2].text == "third"


def test_an_image_too_large_is_refused_with_its_size(pipeline: OcrPipeline) -> None:
    out = io.BytesIO()
    Image.new("L", (MAX_SIDE + 1, 8), 255).save(out, format="PNG")
    [result] = run(pipeline, ImageInput(image=out.getvalue()))

    assert isinstance(result, ItemError)
    assert f"{MAX_SIDE + 1}x8" in result.error


def test_a_format_outside_the_list_is_named(pipeline: OcrPipeline) -> None:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), "white").save(out, format="GIF")
    [result] = run(pipeline, ImageInput(image=out.getvalue()))

    assert isinstance(result, ItemError)
    assert "GIF" in result.error


def test_min_score_leaves_out_unsure_lines(pipeline: OcrPipeline) -> None:
    image = text_image(["confident text"])
    [everything] = run(pipeline, ImageInput(image=image, min_score=0.0))
    [nothing] = run(pipeline, ImageInput(image=image, min_score=1.0))

    assert isinstance(everything, OcrOutput)
    assert everything.text == "confident text"
    assert isinstance(nothing, OcrOutput)
    assert nothing.lines == []


def test_a_blank_image_has_no_text(pipeline: OcrPipeline) -> None:
    [out] = run(pipeline, ImageInput(image=text_image([])))

    assert isinstance(out, OcrOutput)
    assert out.text == ""
    assert out.lines == []
