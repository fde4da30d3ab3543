"""The pictures bench/ocr.py reads: words printed on real photos, screenshots, photos without text.

Every picture is made from the real photos the installed packages ship: scikit-image's and
matplotlib's samples (those that show no text of their own) and scikit-learn's two.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from clipseek.library.samples import write_sample_photos

PHRASES = ["FARMERS MARKET", "BAKERY OPEN SUNDAY", "PLATFORM 9 NORTHBOUND", "NO PARKING", "EXIT ONLY",
           "Fresh Coffee", "Grand Opening", "Museum of Modern Art", "Closed for Lunch",
           "Welcome to Springfield", "Last Train 23:45", "Room 204", "Fish and Chips", "Ice Cream",
           "Public Library", "Main Street", "Sale 50% off", "City Hall", "Free WiFi", "Keep Left"]
SCREEN_LINES = ["Settings", "Wireless network connected", "Battery saver is on", "Download complete",
                "Your order has shipped", "Meeting at three tomorrow", "Dinner reservation confirmed",
                "Update available for your phone", "Search results for garden chairs"]
FONT_FILES = ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
              "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"]
# Pictures of the samples that show text themselves: no ground truth for them.
WITH_OWN_TEXT = {"page.png", "text.png", "logo.png", "clock.png"}
def source_photos(folder: Path) -> list[Image.Image]:
    """The real photos the installed packages ship, as RGB pictures."""
    photos = []
    for candidate in write_sample_photos(folder):
        if candidate.path.name not in WITH_OWN_TEXT:
            with Image.open(candidate.path) as img:
                photos.append(img.convert("RGB"))
    # scikit-learn's two sample photos, read as files: importing sklearn itself is slow.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return photos
    for path in sorted((Path(spec.origin).parent / "datasets" / "images").glob("*.jpg")):
        with Image.open(path) as img:
            photos.append(img.convert("RGB"))
    return photos


def fonts(size: int) -> list[ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    """Pillow's own font and the DejaVu/Liberation fonts that are installed, at `size` pixels."""
    found: list[ImageFont.FreeTypeFont | ImageFont.ImageFont] = [ImageFont.load_default(size=size)]
    found += [ImageFont.truetype(path, size) for path in FONT_FILES if Path(path).exists()]
    return found


def draw_words(text: str, font: Any, colour: tuple[int, int, int], board: tuple[int, int, int] | None,
               tight: bool) -> Image.Image:
    """The words on a transparent layer, on a board of their own when `board` is set."""
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    words = text.split()
    gap = max(2, int(font.getlength("n") * 0.35)) if tight else int(font.getlength(" "))
    widths = [int(font.getlength(word)) for word in words]
    _, top, _, bottom = (int(edge) for edge in probe.textbbox((0, 0), text, font=font))
    pad = max(6, (bottom - top) // 3)
    width = sum(widths) + gap * (len(words) - 1) + 2 * pad
    layer = Image.new("RGBA", (width, bottom + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if board is not None:
        draw.rectangle([0, 0, layer.width - 1, layer.height - 1], fill=(*board, 255))
    x = pad
    for word, width in zip(words, widths, strict=True):
        draw.text((x, pad), word, font=font, fill=(*colour, 255))
        x += width + gap
    return layer


Sign = tuple[Image.Image, str, dict[str, Any]]


def sign_pictures(photos: list[Image.Image], count: int, rng: random.Random) -> list[Sign]:
    """Photos with a printed phrase: font, size, colour, angle and spacing vary."""
    made = []
    for n in range(count):
        photo = photos[n % len(photos)].copy()
        phrase = PHRASES[n % len(PHRASES)]
        size = rng.choice([14, 20, 28, 40, 56])
        font = rng.choice(fonts(size))
        on_board = rng.random() < 0.6
        dark = rng.random() < 0.5
        colour = (20, 20, 20) if dark else (250, 250, 250)
        if not on_board:
            colour = rng.choice([(255, 230, 0), (255, 255, 255), (200, 0, 0), (0, 0, 0)])
        board = ((245, 245, 240) if dark else (30, 60, 120)) if on_board else None
        angle = rng.choice([0, 0, 0, -8, 8, 20, 90, 180])
        tight = rng.random() < 0.4
        layer = draw_words(phrase, font, colour, board, tight).rotate(angle, expand=True)
        fit = min(1.0, photo.width * 0.95 / layer.width, photo.height * 0.95 / layer.height)
        if fit < 1:
            layer = layer.resize((max(1, int(layer.width * fit)), max(1, int(layer.height * fit))))
        x = rng.randint(0, max(0, photo.width - layer.width))
        y = rng.randint(0, max(0, photo.height - layer.height))
        photo.paste(layer, (x, y), layer)
        made.append((photo, phrase, {"size": size, "board": on_board, "angle": angle, "tight": tight,
                                     "font": getattr(font, "path", "pillow default")}))
    return made


def screenshots(count: int, rng: random.Random) -> list[tuple[Image.Image, str]]:
    """Flat screens with three to five lines of interface text at 13-18 px."""
    made = []
    for n in range(count):
        lines = rng.sample(SCREEN_LINES, rng.randint(3, 5))
        size = rng.choice([13, 15, 18])
        font = rng.choice(fonts(size))
        dark = n % 3 == 0
        screen = Image.new("RGB", (rng.choice([720, 1080]), 480), (32, 33, 36) if dark else (248, 248, 250))
        draw = ImageDraw.Draw(screen)
        for row, line in enumerate(lines):
            ink = (230, 230, 230) if dark else (30, 30, 30)
            draw.text((40, 40 + row * (size * 3)), line, font=font, fill=ink)
        made.append((screen, " ".join(lines)))
    return made


def plain_pictures(photos: list[Image.Image], count: int, rng: random.Random) -> list[Image.Image]:
    """The photos, and crops of them, without any text."""
    made = []
    for n in range(count):
        photo = photos[n % len(photos)]
        if n >= len(photos):
            w, h = photo.size
            cw, ch = int(w * rng.uniform(0.5, 0.9)), int(h * rng.uniform(0.5, 0.9))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            photo = photo.crop((x, y, x + cw, y + ch))
        made.append(photo)
    return made


def large_signs(photos: list[Image.Image], count: int, rng: random.Random) -> list[Sign]:
    """Signs on 12-megapixel photos (4000x3000), the words as large relative to the photo as on small ones."""
    made = []
    for picture, phrase, facts in sign_pictures(photos, count, rng):
        made.append((picture.resize((4000, 3000), Image.Resampling.BICUBIC), phrase, facts))
    return made
