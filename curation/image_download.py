"""A record's image, fetched with the safe fetcher and normalised: the ``fetch`` step of the
LAION-style pipelines (``decode`` rejects for bytes that are not a usable image)."""

from __future__ import annotations

import dataclasses
from typing import Any

from curation.fetch import OPTED_OUT, Fetcher, FetchSettings
from curation.images import ImageRejected, ImageSettings, normalize_image
from curation.records import reject


class ImageDownloader:
    """``record -> record with image | Reject`` for records with a ``url`` and an ``image`` field.

    Holds one :class:`Fetcher` per worker (``setup``/``teardown``); safe to call from
    several threads at once. Both failures are dead letters: ``fetch`` with the
    fetcher's reason, ``decode`` with the decoder's; an image its creator opted out of
    (``opted_out``) is a judgment, not a failure.
    """

    def __init__(self, fetch: FetchSettings, image: ImageSettings):
        self._fetch_settings = fetch
        self._image_settings = image
        self._fetcher: Fetcher | None = None

    def setup(self) -> None:
        self._fetcher = Fetcher(self._fetch_settings)

    def teardown(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()

    def __call__(self, record: Any) -> Any:
        result = self._fetcher.fetch(record.url)
        if not result.ok:
            return reject(record, "fetch", result.reason, dead_letter=result.reason != OPTED_OUT, detail=result.detail)
        try:
            image = normalize_image(result.content, self._image_settings)
        except ImageRejected as error:
            return reject(record, "decode", error.reason, dead_letter=True, detail=error.detail)
        return dataclasses.replace(record, image=image)
