"""WARC read throughput of `curation.warc.iter_warc` against warcio's plain ArchiveIterator.

    python bench/bench_warc_read.py [--warc PATH] [--repeat 3]

Reads ``/work/shared/data/extraction-dev.warc.gz`` (real pages) when it exists, else a
generated WARC (as ``bench_warc_memory`` writes them, about 30 MB), and reports MB/s of
compressed input and records/s for each reader, best of ``--repeat`` runs. warcio's
``ArchiveIterator`` reading every record's content stream is the same-run baseline:
``iter_warc`` (bounded, linear, one failure per bad member) should not be slower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from curation.warc import WarcResponse, iter_warc  # noqa: E402

DEV_WARC = Path("/work/shared/data/extraction-dev.warc.gz")


def _curation(path: Path) -> int:
    records = 0
    with path.open("rb") as f:
        for item in iter_warc(f, path.name):
            records += isinstance(item, WarcResponse)
    return records


def _warcio(path: Path) -> int:
    records = 0
    with path.open("rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response" and record.http_headers is not None:
                if record.http_headers.get_statuscode() == "200":
                    record.content_stream().read()
                    records += 1
    return records


def _best(read, path: Path, repeat: int) -> tuple[float, int]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        records = read(path)
        times.append(time.perf_counter() - start)
    return min(times), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warc", type=Path, default=DEV_WARC)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warc-read-") as tmp:
        path = args.warc
        if not path.exists():
            from bench_warc_memory import write_warc

            path = Path(tmp) / "generated.warc.gz"
            write_warc(path, 30)
        size = path.stat().st_size
        print(f"\n{path.name}: {size / 1e6:.1f} MB compressed, best of {args.repeat}\n")
        print("| reader | HTTP 200 records | seconds | MB/s (compressed) | records/s |")
        print("|---|---|---|---|---|")
        for label, read in (("curation.warc.iter_warc", _curation), ("warcio ArchiveIterator (baseline)", _warcio)):
            seconds, records = _best(read, path, args.repeat)
            print(f"| {label} | {records} | {seconds:.3f} | {size / 1e6 / seconds:.1f} | {records / seconds:.0f} |")


if __name__ == "__main__":
    main()
