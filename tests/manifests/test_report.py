"""The run report: every modality's output as one offline HTML page that loads cleanly in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.images import image_data
from curation.records import (
    CaptionPair, DocumentPage, InterleavedDoc, QAPair, Reject, Segment, TextDoc, VideoClip, VideoFrame, to_row,
)
from curation.tokens import TextTokenizer
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.report import _tar_files, build_report, write_report
from manifests.samples import (
    caption_pair_sample, document_page_sample, interleaved_sample, packed_sequence_sample, video_sample,
)
from manifests.shards import plan_shards, shard_name, write_shard
from pipelines.longcontext import SequenceSettings, long_sequence_sample
from report_page import assert_report_loads, load_page

TOKENIZER = TextTokenizer.load("whitespace")
CREATED = "2026-01-02T03:04:05Z"


def picture(n: int, size: tuple[int, int] = (96, 64), image_format: str = "jpeg"):
    """A distinct small image: a colour band per ``n`` on a gradient."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.paste((40 * n % 256, 90, 200 - 30 * n % 200), (0, 0, size[0] // 2, size[1] // 3))
    return image_data(image, image_format)


def reject(n: int, step: str, reason: str, *, dead: bool = False, **stats: float) -> Reject:
    return Reject(id=f"rejected{n:03d}", source=f"input.parquet#{n}", step=step, reason=reason, dead_letter=dead,
                  detail=f"detail of {reason}", url=f"http://127.0.0.1:9/{n}.jpg", text=f"rejected text {n}",
                  stats=stats)


def write_dataset(out: Path, name: str, samples: list, steps: list[str], rejects: list[Reject], *,
                  models: tuple = (), extra: dict | None = None, packed_records: int | None = None) -> Path:
    """Shards, manifest and rejects as a pipeline run leaves them; the funnel counts the rejects."""
    (out / "shards").mkdir(parents=True)
    infos = []
    for n, batch in enumerate(plan_shards(samples, max_samples=3, max_bytes=10**9)):
        path = shard_name(name, 0, n)
        with open(out / path, "wb") as handle:
            infos.append(write_shard(batch, handle, path))
    dropped = Counter((r.step, r.reason) for r in rejects)
    dead = Counter((r.step, r.reason) for r in rejects if r.dead_letter)
    records = packed_records if packed_records is not None else len(samples)
    manifest = build_manifest(
        dataset=name, config={"dataset": name, "filters": {"clip": {"threshold": 0.25}}}, models=list(models),
        shards=infos, funnel=build_funnel(steps, records + len(rejects), dropped, dead), dead_letters=sum(dead.values()),
        package_version="0.1.0", created_at=CREATED, extra=extra, packed_records=packed_records,
    )
    (out / "manifest.json").write_bytes(dump_manifest(manifest))
    if rejects:
        (out / "rejects").mkdir()
        table = pa.Table.from_pylist([to_row(r) for r in rejects], schema=Reject.SCHEMA)
        pq.write_table(table, out / "rejects" / "rejects-00000-of-00001.parquet")
    return out


CLIP = {"name": "curation-tiny", "role": "clip", "weights": "random-init"}


def pairs(out: Path) -> Path:
    samples = [
        caption_pair_sample(CaptionPair(
            id=f"pair{n:03d}", source=f"laion/part-{n % 2}.parquet#{n}", url=f"http://127.0.0.1:9/{n}.jpg",
            text=f"a photo number {n}", image=picture(n), meta={"similarity": 0.3}, stats={"clip_score": 0.2 + n / 50},
        ), TOKENIZER)
        for n in range(7)
    ]
    rejects = [reject(0, "fetch", "http_404", dead=True), reject(1, "fetch", "timeout", dead=True),
               reject(2, "clip", "low_clip_score", clip_score=0.01), reject(3, "clip", "low_clip_score", clip_score=0.02)]
    return write_dataset(out, "pairs", samples, ["read", "fetch", "clip"], rejects, models=[CLIP])


def captions(out: Path) -> Path:
    samples = []
    for n in range(4):
        pair = CaptionPair(
            id=f"cap{n:03d}", source="alt.parquet#%d" % n, url=f"http://127.0.0.1:9/{n}.png",
            text=f"A long descriptive synthetic caption of picture {n} with a red band.", image=picture(n, image_format="png"),
            meta={"alt_text": f"img_{n}.png", "caption_source": "synthetic"}, stats={"clip_margin": n / 10},
        )
        samples.append(caption_pair_sample(pair, TOKENIZER))
    rejects = [reject(0, "check", "repetition", clip_margin=-0.2)]
    models = [{"name": "SmolLM2-135M-Instruct", "role": "generator", "weights": "/models/smollm2.gguf"}]
    return write_dataset(out, "captions", samples, ["read", "check"], rejects, models=models)


def documents(out: Path) -> Path:
    samples = [
        document_page_sample(DocumentPage(
            id=f"page{n:03d}", source=f"report.pdf#p{n}", image=picture(n, (120, 160), "png"),
            transcript=f"Transcribed line one of page {n}.\nLine two.", qa=[QAPair("What page?", str(n))],
            meta={"file": "report.pdf", "page": n, "route": "ocr", "engine": "rapidocr", "confidence": 0.9 + n / 100},
            stats={"page_quality.chars": 40 + n},
        ), TOKENIZER)
        for n in range(3)
    ]
    rejects = [reject(0, "open", "encrypted", dead=True), reject(1, "text_dedup", "near_duplicate")]
    extra = {"file_funnel": [{"step": "read", "in": 3, "out": 3, "dropped": {}},
                             {"step": "open", "in": 3, "out": 2, "dropped": {"encrypted": 1},
                              "dead_letters": {"encrypted": 1}}]}
    models = [{"name": "PP-OCRv4", "role": "ocr", "weights": "package:rapidocr_onnxruntime"}]
    return write_dataset(out, "documents", samples, ["open", "text_dedup"], rejects, models=models, extra=extra)


def video(out: Path) -> Path:
    frames = [VideoFrame(id=f"f{n}", source="clip.mp4", t=n * 1.5, scene=n // 2, image=picture(n), keyframe=n % 2 == 0,
                         caption=f"frame {n}: a band moves") for n in range(4)]
    clip = VideoClip(id="video000", source="clip.mp4", path="/in/clip.mp4", frames=frames, summary="A band moves.",
                     qa=[QAPair("What moves?", "A band.")], meta={"file": "clip.mp4", "duration": 6.0, "fps": 25},
                     stats={"motion": 0.4})
    return write_dataset(out, "video", [video_sample(clip, TOKENIZER)], ["decode"],
                         [reject(0, "decode", "truncated", dead=True)])


def interleaved(out: Path) -> Path:
    images = [picture(n) for n in range(2)]
    doc = InterleavedDoc(
        id="page000", source="crawl.warc.gz@1234", url="http://127.0.0.1:9/page",
        segments=[Segment("text", "First paragraph."), Segment("image", "alt of the second image", images[1].sha256, "b.jpg"),
                  Segment("text", "Second paragraph."), Segment("image", "alt of the first image", images[0].sha256, "a.jpg")],
        images=images, stats={"text_quality": 0.8, "clip_overall": 0.31},
    )
    rejects = [reject(0, "page_dedup", "near_duplicate", text_quality=0.7), reject(1, "text_quality", "too_short", text_quality=0.1)]
    return write_dataset(out, "interleaved", [interleaved_sample(doc, TOKENIZER)], ["text_quality", "page_dedup"], rejects,
                         models=[CLIP])


def text(out: Path) -> Path:
    docs = [TextDoc(id=f"doc{n}", source=f"corpus-{n % 2}.jsonl#{n}", url="", text=f"Document {n} " * 20) for n in range(4)]
    samples = [packed_sequence_sample([(docs[0], 0, 40, 40), (docs[1], 0, 40, 40)], 1),
               packed_sequence_sample([(docs[2], 0, 40, 40), (docs[3], 0, 20, 40)], 1),
               packed_sequence_sample([(docs[3], 20, 40, 40)], 1)]
    rejects = [reject(0, "exact_dedup", "exact_duplicate"), reject(1, "quality_model", "low_quality", quality=0.1)]
    return write_dataset(out, "text", samples, ["exact_dedup", "quality_model"], rejects, packed_records=4)


def longcontext(out: Path) -> Path:
    records = [CaptionPair(id=f"src{n}", source=f"captions#{n}", url="", text=f"description {n}", image=picture(n),
                           meta={"tokens": {"visual": 128, "text": 2}}) for n in range(3)]
    sample = long_sequence_sample([(0, record) for record in records], SequenceSettings())
    return write_dataset(out, "longcontext", [sample], ["read", "budget"], [reject(0, "budget", "over_budget")])


MODALITIES = {"pairs": pairs, "captions": captions, "documents": documents, "video": video,
              "interleaved": interleaved, "text": text, "longcontext": longcontext}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    made = {name: make(root / name) for name, make in MODALITIES.items()}
    made["stage"] = stage(root / "stage", made["captions"], made["documents"])
    return made


def stage(out: Path, *sources: Path) -> Path:
    """A stage manifest over two datasets, as ``curate mix`` writes it."""
    out.mkdir()
    entries = [{"name": source.name, "manifest": f"../{source.name}/manifest.json", "weight": 0.5,
                "samples_per_epoch": 3 + n, "tokens_per_epoch": 500 * (n + 1)} for n, source in enumerate(sources)]
    spec = {"kind": "stage", "format_version": 1, "name": "stage-2", "created_at": CREATED, "weight_by": "tokens",
            "sequence_length": 8192, "sources": entries, "warnings": ["source 'captions' repeats 1.2 times"],
            "totals": {"samples_per_epoch": 7, "tokens_per_epoch": 1500}, "config": {"name": "stage-2"}}
    (out / "stage.json").write_text(json.dumps(spec))
    return out


@pytest.fixture(scope="module")
def reports(outputs) -> dict[str, Path]:
    return {name: Path(write_report(str(out))) for name, out in outputs.items()}


def svg_texts(page: str, element_id: str) -> str:
    """The SVG text of the chart ``element_id`` (charts are base64 SVG images)."""
    found = re.search(rf'<img id="{element_id}" class="chart \w+"[^>]* src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert found, f"no chart {element_id}"
    return base64.b64decode(found.group(1)).decode()


def card(page: str, kind: str) -> str:
    start = page.index(f'<article class="card {kind}">')
    return page[start:page.index("</article>", start)]


@pytest.mark.parametrize("name", [*MODALITIES, "stage"])
def test_every_report_loads_in_chromium_with_no_console_output(name, reports, tmp_path):
    load = assert_report_loads(reports[name], tmp_path, thumbnails=name != "text")
    charts = re.findall(r'<img id="([\w-]+)" class="chart funnel"', load.dom)
    if name == "stage":  # a stage shows the funnels of its sources
        assert charts == ["funnel-0-chart", "funnel-1-chart", "funnel-1-file_funnel-chart"]
    else:
        assert charts[0] == "funnel-chart"


def test_a_broken_image_and_a_network_load_are_caught(reports, tmp_path):
    page = reports["pairs"].read_text()
    extra = '<img src="data:image/jpeg;base64,AAAA"><img src="http://127.0.0.1:9/tracker.png">'
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace('<div id="kept-gallery" class="gallery">', '<div id="kept-gallery" class="gallery">' + extra))
    load = load_page(broken, tmp_path / "chromium")
    assert load.body["data-images"] == "broken"
    assert "2 image(s) of this report did not load" in load.dom
    assert any("127.0.0.1:9/tracker.png" in line and "Content Security Policy" in line for line in load.console)


def test_the_page_references_nothing_outside_itself(reports):
    for path in reports.values():
        page = path.read_text()
        assert re.findall(r'\b(?:src|href)="(?!data:|#)', page) == []
        assert "<link" not in page and "@import" not in page and "url(" not in page


def test_the_funnel_chart_and_table_hold_every_drop_reason(reports):
    page = reports["pairs"].read_text()
    chart = svg_texts(page, "funnel-chart")
    for label in ("fetch: http_404 (dead letter) = 1", "fetch: timeout (dead letter) = 1", "clip: low_clip_score = 2"):
        assert label in chart
    assert "<td>clip</td><td>9</td><td>7</td><td>low_clip_score: 2</td>" in page
    documents = reports["documents"].read_text()
    assert "open: encrypted (dead letter) = 1" in svg_texts(documents, "funnel-file_funnel-chart")


def test_shards_and_sources_count_samples_and_tokens(reports, outputs):
    page = reports["pairs"].read_text()
    manifest = json.loads((outputs["pairs"] / "manifest.json").read_text())
    for shard in manifest["shards"]:
        assert f"<td>{shard['path']}</td><td>{shard['samples']}</td><td>{shard['text_tokens']}</td>" in page
    assert "<td>laion/part-0.parquet</td><td>4</td>" in page and "<td>laion/part-1.parquet</td><td>3</td>" in page
    text = reports["text"].read_text()
    assert "<td>corpus-1.jsonl</td><td>3</td><td>80</td>" in text, "pieces of docs 1 and 3: 40 + 20 + 20 tokens"


def test_histograms_show_kept_and_rejected_scores(reports):
    chart = svg_texts(reports["pairs"].read_text(), "scores-chart")
    assert "clip_score" in chart and "kept (7)" in chart and "rejected (2)" in chart
    assert "ocr_confidence" in svg_texts(reports["documents"].read_text(), "scores-chart")


def test_interleaved_pages_render_in_reading_order(reports):
    page = card(reports["interleaved"].read_text(), "interleaved")
    order = [page.index(marker) for marker in
             ("First paragraph.", "alt of the second image", "Second paragraph.", "alt of the first image")]
    assert order == sorted(order)
    assert page.count('class="thumb"') == 2


def test_captions_sit_beside_their_alt_text_and_pages_beside_their_transcription(reports):
    caption = card(reports["captions"].read_text(), "caption")
    assert "A long descriptive synthetic caption of picture 0" in caption and "<th>alt text</th><td>img_0.png</td>" in caption
    page = card(reports["documents"].read_text(), "document")
    assert re.search(r'<div class="side"><img class="thumb"[^>]*><pre class="text">Transcribed line one of page 0', page)
    assert "What page?" in page and "route: ocr" in page


def test_video_frames_carry_their_captions_and_sequences_their_targets(reports):
    video = card(reports["video"].read_text(), "video")
    assert video.count('class="thumb"') == 4 and "frame 3: a band moves" in video and "A band moves." in video
    sequence = card(reports["longcontext"].read_text(), "sequence")
    assert sequence.count('class="thumb"') == 3 and "2: description 2" in sequence


def test_rejects_show_every_reason_and_flag_dead_letters(reports):
    page = reports["pairs"].read_text()
    rejects = page[page.index('id="rejects-gallery"'):]
    assert rejects.count('<article class="card reject">') == 4
    assert rejects.count('dead letter</span>') == 2 and "fetch: http_404" in rejects and "rejected text 2" in rejects


def test_models_with_random_weights_are_flagged_and_the_config_is_shown(reports):
    page = reports["pairs"].read_text()
    assert re.search(r'<tr class="random">.*?curation-tiny.*?RANDOM WEIGHTS', page)
    captions = reports["captions"].read_text()
    assert "SmolLM2-135M-Instruct" in captions and 'class="random"' not in captions
    assert "threshold: 0.25" in page and "model curation-tiny uses random-init weights" in page


def test_a_stage_reports_its_sources_and_draws_its_gallery_from_each(reports):
    page = reports["stage"].read_text()
    assert "source &#x27;captions&#x27; repeats 1.2 times" in page
    assert "<td>captions</td><td>../captions/manifest.json</td><td>0.5</td><td>3</td><td>500</td><td>4</td>" in page
    gallery = page[page.index('id="kept-gallery"'):page.index('id="rejects"')]
    assert "caption · " in gallery and "document · " in gallery
    assert "tokens per epoch" in svg_texts(page, "sources-chart")


def test_the_gallery_shows_the_first_samples_only(outputs):
    page = build_report(str(outputs["pairs"]), gallery_size=2)
    assert page.count('<article class="card caption">') == 2
    assert "<td>samples read for this report</td><td>7</td>" in page


def test_the_report_is_deterministic_and_can_go_elsewhere(outputs, tmp_path):
    target = tmp_path / "elsewhere.html"
    assert write_report(str(outputs["video"]), str(target)) == str(target)
    assert target.read_bytes() == (outputs["video"] / "report.html").read_bytes()


def test_an_image_that_does_not_decode_is_a_notice(outputs, tmp_path):
    out = tmp_path / "pairs"
    shutil.copytree(outputs["pairs"], out)
    shard = out / json.loads((out / "manifest.json").read_text())["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    start = data.index(b"\xff\xd8\xff")  # the first JPEG's header
    data[start:start + 64] = b"\0" * 64
    shard.write_bytes(bytes(data))
    assert "image does not decode: UnidentifiedImageError" in build_report(str(out))


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_the_shard_reader_agrees_with_tarfile(tar_format):
    members = [("k" * 90 + "/long-key.json", b'{"a": 1}'), ("dir/key.txt", b"x" * 1000), ("dir/key.jpg", b""),
               ("ünï.json", "{}".encode())]
    if tar_format == tarfile.USTAR_FORMAT:
        members = [(name.replace("ünï", "uni"), data) for name, data in members]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE  # not a regular file: skipped
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    found = list(_tar_files(buffer, lambda name: not name.endswith(".txt")))
    assert found == [(name, None if name.endswith(".txt") else data) for name, data in members]
    for junk in (b"not a tar" * 100, b"0" * 512):
        with pytest.raises(ValueError, match="not a tar header"):
            list(_tar_files(io.BytesIO(junk), lambda name: True))
