"""Reading one image file: decoding within limits, what the photo says of itself (EXIF, XMP),
and the caption text it carries."""

from clipseek.photo.imaging import ImageDecodeError, is_image_name, load_rgb, probe_with_facts
from clipseek.photo.metadata import PhotoFacts

__all__ = ["ImageDecodeError", "PhotoFacts", "is_image_name", "load_rgb", "probe_with_facts"]
