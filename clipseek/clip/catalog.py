"""The models ClipSeek knows: their dimension, weights file, published quality and checksum."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from clipseek.clip.weights import OPENAI_CHECKPOINTS
from clipseek.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32/openai"


@dataclass(frozen=True)
class CatalogModel:
    """One `ARCH/PRETRAINED` model: what it produces and where its weights come from."""

    name: str
    dim: int
    weights_file: str
    # The file's size in MB: exact for OpenAI's ViT-B files, about for RN50 and ViT-L/14;
    # else fp32 parameters x 4 bytes.
    size_mb: int
    # COCO-5k text->image Recall@1 in percent from open_clip's published retrieval results
    # (docs/openclip_retrieval_results.csv, column "MSCOCO image retr. R@1"); None where the
    # table has no row for the model.
    coco_t2i_r1: float | None
    # None: not pinned here, so a first use needs --sha256 (CLIPSEEK_WEIGHTS_SHA256).
    sha256: str | None

    @property
    def arch(self) -> str:
        """The open_clip architecture name (the part before the slash)."""
        return self.name.partition("/")[0]

    @property
    def pretrained(self) -> str:
        """The open_clip pretrained tag (the part after the slash)."""
        return self.name.partition("/")[2]


# Hugging Face hub files of open_clip's models carry no checksum in open_clip's own tables,
# and none could be read on this machine, so they are not pinned: never guess one. Each is
# the hub's open_clip_model.safetensors, kept under its model's name so that they do not collide.
def _hub_file(name: str) -> str:
    return name.replace("/", "_") + ".safetensors"

MODELS: dict[str, CatalogModel] = {m.name: m for m in (
    CatalogModel("ViT-B-32/openai", 512, "ViT-B-32.pt", OPENAI_CHECKPOINTS["ViT-B-32"].size_mb,
                 30.4, OPENAI_CHECKPOINTS["ViT-B-32"].sha256),
    CatalogModel("ViT-B-16/openai", 512, "ViT-B-16.pt", OPENAI_CHECKPOINTS["ViT-B-16"].size_mb,
                 33.1, OPENAI_CHECKPOINTS["ViT-B-16"].sha256),
    # Other dimensions in OpenAI's layout: 1,024 (RN50) and 768 (ViT-L/14).
    CatalogModel("RN50/openai", 1024, "RN50.pt", OPENAI_CHECKPOINTS["RN50"].size_mb,
                 28.5, OPENAI_CHECKPOINTS["RN50"].sha256),
    CatalogModel("ViT-L-14/openai", 768, "ViT-L-14.pt", OPENAI_CHECKPOINTS["ViT-L-14"].size_mb,
                 36.5, OPENAI_CHECKPOINTS["ViT-L-14"].sha256),
    CatalogModel("ViT-B-32/laion2b_s34b_b79k", 512, _hub_file("ViT-B-32/laion2b_s34b_b79k"), 605, 39.3, None),
    CatalogModel("MobileCLIP-B/datacompdr", 512, _hub_file("MobileCLIP-B/datacompdr"), 599, None, None),
    CatalogModel("ViT-B-16-SigLIP2/webli", 768, _hub_file("ViT-B-16-SigLIP2/webli"), 1501, None, None),
    # Its text tower is Hugging Face's XLM-RoBERTa: open_clip builds it only with `transformers`.
    CatalogModel("xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", 512,
                 _hub_file("xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"), 1464, 37.8, None),
)}

RANDOM_TAG = "random"


class UnknownModel(ConfigError):
    """A model name that is not in the catalogue."""


def known_names() -> list[str]:
    """Every name ClipSeek accepts: the catalogue's, and each architecture with random weights."""
    return list(MODELS) + [f"{arch}/{RANDOM_TAG}" for arch in dict.fromkeys(m.arch for m in MODELS.values())]


def lookup(name: str) -> CatalogModel:
    """The catalogue entry `name` means (ARCH/random takes its architecture's first entry).

    An unknown name raises UnknownModel with the nearest known names.
    """
    if name in MODELS:
        return MODELS[name]
    arch, _, tag = name.partition("/")
    if tag == RANDOM_TAG:
        for model in MODELS.values():
            if model.arch == arch:
                return model
    names = known_names()
    nearest = difflib.get_close_matches(name, names, n=3, cutoff=0.4) or [DEFAULT_MODEL]
    raise UnknownModel(f"ClipSeek knows no model {name!r}; did you mean "
                       f"{' or '.join(nearest)}? (`clipseek models` lists them all.)")


def dimension_of(name: str) -> int:
    """The embedding dimension `name` produces: the catalogue's, else open_clip's configuration."""
    try:
        return lookup(name).dim
    except UnknownModel:
        import open_clip

        config = open_clip.get_model_config(name.partition("/")[0])
        if not config:
            raise
        return int(config["embed_dim"])
