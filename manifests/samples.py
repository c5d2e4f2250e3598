"""Record -> webdataset sample: which files each modality's sample holds."""

from __future__ import annotations

import json

from curation.records import CaptionPair
from curation.tokens import TextTokenizer, visual_tokens
from manifests.shards import Sample


def caption_pair_sample(record: CaptionPair, tokenizer: TextTokenizer, resolution: str = "auto") -> Sample:
    """A caption pair as ``<id>.<jpg|png|webp>``, ``<id>.txt`` and ``<id>.json``.

    The JSON carries the source URL, the image facts, every score in ``stats``
    and the input's extra columns in ``meta``.
    """
    image = record.image
    info = {
        "id": record.id,
        "source": record.source,
        "url": record.url,
        "text": record.text,
        "image": {
            "sha256": image.sha256,
            "phash": image.phash,
            "width": image.width,
            "height": image.height,
            "format": image.format,
        },
        "stats": dict(sorted(record.stats.items())),
        "meta": record.meta,
    }
    return Sample(
        key=record.id,
        fields={
            image.extension: image.data,
            "txt": record.text.encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=tokenizer.count(record.text),
        visual_tokens=visual_tokens(image.width, image.height, resolution),
    )
