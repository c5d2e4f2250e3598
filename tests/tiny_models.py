"""Tiny real models for tests: real architectures with random weights, saved like hub models.

Nothing is downloaded: the tokenizer is trained here on a few sentences.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran fast over the red house",
    "rewrite this caption in plain english",
    "describe the image in one short sentence",
    "a blue river runs under an old stone bridge",
    "system user assistant : .",
]
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
PAD, UNK, BOS, EOS, IMAGE = range(len(SPECIAL))
# Renders string content (tokenizers) and typed parts (processors) alike.
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image> {% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %} </s> "
    "{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}"
)

def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained here, with a chat template: nothing downloaded."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=TEMPLATE,
    )


def tiny_llama_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def save_tiny_lm(directory: Path) -> None:
    """A real Llama architecture with random weights and its tokenizer, saved like a hub model."""
    tokenizer = make_tokenizer()
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(len(tokenizer))).save_pretrained(directory)


def save_tiny_llava(directory: Path) -> None:
    """A LLaVA (CLIP vision tower + Llama) with random weights and its processor, saved like a hub model."""
    tokenizer = make_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=tiny_llama_config(len(tokenizer)),
        image_token_id=IMAGE,
        vision_feature_select_strategy="default",
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, which the "default" strategy drops
        chat_template=TEMPLATE,
    )
    processor.save_pretrained(directory)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(directory)
