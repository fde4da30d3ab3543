"""The CLIP network: the models ClipSeek knows, their weights, loading them in the precision
this machine runs fastest, and the encoder that turns pictures and words into vectors."""

from clipseek.clip.catalog import MODELS, lookup
from clipseek.clip.encoder import ClipEncoder, Encoder

__all__ = ["MODELS", "ClipEncoder", "Encoder", "lookup"]
