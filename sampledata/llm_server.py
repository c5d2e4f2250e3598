"""A small OpenAI-compatible chat completions server on 127.0.0.1, for tests, the demo and benchmarks.

:class:`LLMServer` answers ``POST /v1/chat/completions`` by rule instead of
with a model: the answer "rewrites" the user message by putting its first
double-quoted text (an alt text, say) inside a longer descriptive sentence, so
a caller can check the facts survive; a message holding a ``<transcription>``
block gets a JSON list of question-answer pairs whose answers are its sentences; one holding a
``<descriptions>`` block (timestamped frame descriptions) gets a summary made of them; one asking
to describe *frames of a video* gets one numbered line per attached image naming its main colour
and size. The sentence pattern depends on the
request's ``seed``; when the user message carries an image, the answer ends
with the image's format and size, read from the decoded ``data:`` URL.

Failure modes are chosen by a marker in the user message, per distinct user
message (its attempts are counted), or by a schedule for the first requests in
order of arrival (``schedule=("http500", "ok", "slow")``):

=============  =====================================================================
``slow``       answers after ``slow_seconds`` (set it above the client's timeout)
``http500``    500 with an OpenAI-style error body
``http429``    429 with an OpenAI-style error body
``http400``    400 with an OpenAI-style error body
``malformed``  200 with a body that is not JSON
``nochoices``  200 with a JSON completion whose ``choices`` list is empty
=============  =====================================================================

``[[mode]]`` fails every attempt of that message; ``[[mode:N]]`` fails its first
``N`` attempts and answers normally after. Requests that are not valid JSON
with a ``messages`` list, or that carry an image URL that is not a ``data:``
URL of a decodable JPEG, PNG, WebP or GIF of the declared type, answer 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from sampledata.loopback import LoopbackHandler, LoopbackService

MODES = ("ok", "slow", "http500", "http429", "http400", "malformed", "nochoices")
CHAT_PATH = "/v1/chat/completions"

_MARKER = re.compile(r"\[\[(\w+)(?::(\d+))?\]\]")
_ALT_LINE = re.compile(r"^\s*Alt text:\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r'"([^"]+)"')
_TRANSCRIPTION = re.compile(r"<transcription>\s*(.*?)\s*</transcription>", re.DOTALL)
_DESCRIPTIONS = re.compile(r"<descriptions>\s*(.*?)\s*</descriptions>", re.DOTALL)
_FRAMES_REQUEST = "frames of a video"
_COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (230, 220, 40),
    "white": (245, 245, 245), "black": (10, 10, 10), "grey": (128, 128, 128), "orange": (240, 140, 30),
    "purple": (140, 50, 170), "cyan": (40, 200, 210),
}
_DATA_URL = re.compile(r"data:(image/[\w.+-]+);base64,(.*)", re.DOTALL)
_MIME_BY_FORMAT = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_TEMPLATES = (
    "A detailed photograph of {subject}, shown in natural light with the main subject in clear focus.",
    "This picture shows {subject}; the scene is captured plainly, its colours and setting clearly visible.",
    "A well-composed image of {subject}, described as it appears in the frame, nothing added.",
)
_STATUS = {"http500": 500, "http429": 429, "http400": 400}


class BadRequest(ValueError):
    """A request the server answers with 400."""


@dataclass(frozen=True)
class ImageInfo:
    """An image decoded from a ``data:`` URL."""

    mime: str
    width: int
    height: int


def decode_image_url(url: str) -> ImageInfo:
    """Decodes and checks a ``data:image/...;base64,`` URL.

    Raises:
        BadRequest: if it is not such a URL, the base64 is invalid, the bytes are
            not a JPEG, PNG, WebP or GIF image, or their type differs from the declared one.
    """
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise BadRequest(f"not a base64 image data URL: {url[:40]!r}")
    try:
        data = base64.b64decode(match[2], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            found = _MIME_BY_FORMAT.get(image.format or "")
            size = image.size
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequest(f"undecodable image: {exc}") from exc
    if found != match[1]:
        raise BadRequest(f"declared {match[1]}, found {found or 'an unsupported format'}")
    return ImageInfo(found, *size)


def rewrite(text: str, seed: int = 0) -> str:
    """The server's answer to ``text``: the rest of its ``Alt text:`` line (as the caption prompts
    put it; failure markers stay in, so the answer keeps every number of the alt text), else its
    first quoted phrase, else all of it, in a descriptive sentence."""
    labelled = _ALT_LINE.search(text)
    plain = " ".join((labelled[1] if labelled else _MARKER.sub("", text)).split())
    quoted = None if labelled else _QUOTED.search(plain)
    subject = quoted[1] if quoted else plain
    return _TEMPLATES[seed % len(_TEMPLATES)].format(subject=subject)


def question_answers(transcription: str, n_pairs: int = 3) -> str:
    """The server's answer to a request for question-answer pairs about a transcription (a
    ``<transcription>`` block): a JSON list whose answers are the transcription's own sentences
    and whose questions ask what it says about each sentence's first words."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", transcription) if len(s.split()) >= 4]
    pairs = [
        {"question": f"What does the page say about {' '.join(sentence.split()[:3])}?", "answer": sentence}
        for sentence in sentences[:n_pairs]
    ]
    return json.dumps(pairs)


def colour_name(data_url: str) -> str:
    """The basic colour name nearest to the mean colour of a ``data:`` URL's image."""
    data = base64.b64decode(_DATA_URL.fullmatch(data_url)[2])
    with Image.open(io.BytesIO(data)) as image:
        mean = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return min(_COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(_COLOURS[name], mean)))


def summary(descriptions: str) -> str:
    """The server's summary of timestamped frame descriptions: what sets each description apart
    from the others (the words not all of them share), in order, then the first in full."""
    lines = [re.sub(r"^\s*\[[^\]]*\]\s*", "", line).strip() for line in descriptions.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 2:
        return f"The video shows one moment: {lines[0]}" if lines else ""
    shared = set.intersection(*(set(line.split()) for line in lines))
    parts = [" ".join(word for word in line.split() if word not in shared).strip(" ,.") for line in lines]
    distinct = [part for i, part in enumerate(parts) if part and part not in parts[:i]]
    return f"The video shows {len(lines)} moments in order: {', then '.join(distinct)}. It opens on this: {lines[0]}"


@dataclass(frozen=True)
class _Chat:
    """The parts of a chat completion request the server uses."""

    model: str
    user_text: str
    seed: int
    images: tuple[ImageInfo, ...] = ()
    colours: tuple[str, ...] = ()

    @property
    def image(self) -> ImageInfo | None:
        return self.images[0] if self.images else None


def _parse_chat(body: bytes) -> _Chat:
    """Reads the last user message of a request body.

    Raises:
        BadRequest: if the body is not a chat completion request or an image is invalid.
    """
    try:
        request = json.loads(body)
        users = [m for m in request["messages"] if m.get("role") == "user"]
        content = users[-1]["content"]
        seed = int(request.get("seed") or 0)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BadRequest(f"not a chat completion request: {exc!r}") from exc
    if isinstance(content, str):
        return _Chat(str(request.get("model", "")), content, seed, None)
    try:
        texts = [part["text"] for part in content if part["type"] == "text"]
        urls = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    except (KeyError, TypeError) as exc:
        raise BadRequest(f"invalid content part: {exc!r}") from exc
    images = tuple(decode_image_url(url) for url in urls)
    colours = tuple(colour_name(url) for url in urls)
    return _Chat(str(request.get("model", "")), " ".join(texts), seed, images, colours)


def _completion(chat: _Chat, index: int, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": len(chat.user_text.split()),
            "completion_tokens": len(text.split()),
            "total_tokens": len(chat.user_text.split()) + len(text.split()),
        },
    }


def _error(status: int, message: str) -> dict[str, Any]:
    kind = "BadRequestError" if status < 500 else "ServerError"
    return {"error": {"message": message, "type": kind, "code": status}}


class _Handler(LoopbackHandler):
    server_version = "curation-sample-llm/1.0"

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        self.dispatch()

    def send_body(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        self.send_body(status, json.dumps(payload).encode())


class LLMServer(LoopbackService):
    """Threaded OpenAI-compatible server on 127.0.0.1 (ephemeral port) answering by rule.

    Use it as a context manager or call :meth:`start` and :meth:`stop`; its
    :attr:`base_url`, ``http://127.0.0.1:<port>/v1``, is the ``endpoint`` of a
    generator spec. It counts requests, requests that carried a valid image,
    ``Authorization`` headers, and the most requests handled at once
    (:attr:`max_in_flight`). A request
    stays in flight until its handler has answered, even one its client gave
    up on, so a ``slow`` request keeps counting for ``slow_seconds``.

    Args:
        delay: seconds every request waits before it is answered (a model's latency).
        slow_seconds: extra seconds a ``slow`` request waits.
        schedule: modes (see :data:`MODES`) of the first requests, in order of
            arrival, overriding their markers.

    Raises:
        ValueError: if the schedule names an unknown mode.
    """

    handler = _Handler
    url_path = "/v1"

    def __init__(self, *, delay: float = 0.0, slow_seconds: float = 5.0, schedule: Sequence[str] = ()):
        unknown = sorted(set(schedule) - set(MODES))
        if unknown:
            raise ValueError(f"unknown modes {unknown}; known: {', '.join(MODES)}")
        super().__init__()
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.schedule = tuple(schedule)
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._authorizations: Counter[str] = Counter()
        self._requests = self._image_requests = self._in_flight = self._max_in_flight = self._most_images = 0

    @property
    def requests(self) -> int:
        """Chat completion requests received so far."""
        with self._lock:
            return self._requests

    @property
    def image_requests(self) -> int:
        """Requests so far whose user message carried a valid image data URL."""
        with self._lock:
            return self._image_requests

    @property
    def most_images(self) -> int:
        """The most images one request so far carried."""
        with self._lock:
            return self._most_images

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at the same time so far."""
        with self._lock:
            return self._max_in_flight

    def authorizations(self) -> Counter[str]:
        """Requests so far by ``Authorization`` header value (``""`` for none)."""
        with self._lock:
            return Counter(self._authorizations)

    def _serve(self, handler: _Handler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if urllib.parse.urlsplit(handler.path).path != CHAT_PATH:
            handler.send_json(404, _error(404, f"no route {handler.path}"))
            return
        with self._lock:
            index = self._requests
            self._requests += 1
            self._authorizations[handler.headers.get("Authorization", "")] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            self._answer(handler, body, index)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, handler: _Handler, body: bytes, index: int) -> None:
        if self._stopping.wait(self.delay):
            return
        try:
            chat = _parse_chat(body)
        except BadRequest as exc:
            handler.send_json(400, _error(400, str(exc)))
            return
        if chat.images:
            with self._lock:
                self._image_requests += 1
                self._most_images = max(self._most_images, len(chat.images))
        mode = self._mode(chat.user_text, index)
        if mode == "slow" and self._stopping.wait(self.slow_seconds):
            return
        if mode in _STATUS:
            handler.send_json(_STATUS[mode], _error(_STATUS[mode], f"sample failure {mode}"))
        elif mode == "malformed":
            handler.send_body(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
        elif mode == "nochoices":
            handler.send_json(200, dict(_completion(chat, index, ""), choices=[]))
        else:
            handler.send_json(200, _completion(chat, index, self._reply_text(chat)))

    def _mode(self, user_text: str, index: int) -> str:
        """The mode of request ``index``: the schedule's, else its marker's for this attempt."""
        with self._lock:
            attempt = self._attempts[user_text]
            self._attempts[user_text] += 1
        if index < len(self.schedule):
            return self.schedule[index]
        marker = _MARKER.search(user_text)
        if marker is None or marker[1] not in MODES:
            return "ok"
        failing = marker[2] is None or attempt < int(marker[2])
        return marker[1] if failing else "ok"

    @staticmethod
    def _reply_text(chat: _Chat) -> str:
        transcription = _TRANSCRIPTION.search(chat.user_text)
        if transcription:
            return question_answers(transcription[1])
        descriptions = _DESCRIPTIONS.search(chat.user_text)
        if descriptions:
            return summary(descriptions[1])
        if _FRAMES_REQUEST in chat.user_text and chat.images:
            return "\n".join(
                f"{n}: A frame filled mostly with {colour}, {image.width}x{image.height} pixels."
                for n, (image, colour) in enumerate(zip(chat.images, chat.colours), start=1)
            )
        text = rewrite(chat.user_text, chat.seed)
        if chat.image is None:
            return text
        image = chat.image
        return f"{text} The attached {image.mime} image is {image.width}x{image.height} pixels."
