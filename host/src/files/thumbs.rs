//! Thumbnails as PocketBase cuts them (its `imaging` calls, linear filter): `WxH` fills and
//! crops from the center, `t`/`b` from the top/bottom, `f` fits inside without cropping (never
//! enlarging), and a 0 side keeps the aspect ratio. The EXIF orientation is applied first;
//! animated images give their first frame. JPEG, GIF, TIFF and BMP stay in their format,
//! everything else becomes PNG.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::FileError;
use super::name::{ThumbMode, ThumbSize};

/// The MIME types PocketBase makes thumbs of.
pub const IMAGE_TYPES: [&str; 5] = [
    "image/png",
    "image/jpg",
    "image/jpeg",
    "image/gif",
    "image/webp",
];

/// Whether files of this type get thumbs.
pub fn is_image(mime: &str) -> bool {
    let base = mime.split(';').next().unwrap_or("").trim();
    IMAGE_TYPES.contains(&base)
}

/// The thumb of `original` (of type `mime`) at `size`: its bytes and content type.
pub fn generate(
    original: &[u8],
    mime: &str,
    size: ThumbSize,
) -> Result<(Vec<u8>, &'static str), FileError> {
    let bad = |e: image::ImageError| FileError::Image(e.to_string());
    let reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| FileError::Image(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let thumb = resize(&img, size);
    let (format, content_type) = match mime.split(';').next().unwrap_or("").trim() {
        "image/jpeg" | "image/jpg" => (ImageFormat::Jpeg, "image/jpeg"),
        "image/gif" => (ImageFormat::Gif, "image/gif"),
        "image/tiff" => (ImageFormat::Tiff, "image/tiff"),
        "image/bmp" => (ImageFormat::Bmp, "image/bmp"),
        _ => (ImageFormat::Png, "image/png"),
    };
    let thumb = match format {
        // JPEG has no alpha channel; GIF encodes RGBA.
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(thumb.to_rgb8()),
        ImageFormat::Gif => DynamicImage::ImageRgba8(thumb.to_rgba8()),
        _ => thumb,
    };
    let mut out = Cursor::new(Vec::new());
    thumb.write_to(&mut out, format).map_err(bad)?;
    Ok((out.into_inner(), content_type))
}

fn resize(img: &DynamicImage, size: ThumbSize) -> DynamicImage {
    let (w, h) = (size.width, size.height);
    let filter = FilterType::Triangle;
    if w == 0 || h == 0 {
        // One side given: scale to it, keeping the aspect ratio (enlarging if need be).
        let (ow, oh) = (img.width().max(1) as f64, img.height().max(1) as f64);
        let (nw, nh) = if w == 0 {
            (((ow * h as f64) / oh).round().max(1.0) as u32, h)
        } else {
            (w, ((oh * w as f64) / ow).round().max(1.0) as u32)
        };
        return img.resize_exact(nw, nh, filter);
    }
    match size.mode {
        ThumbMode::Fit => {
            if img.width() <= w && img.height() <= h {
                img.clone()
            } else {
                img.resize(w, h, filter)
            }
        }
        mode => fill(img, w, h, mode, filter),
    }
}

/// Scales to cover WxH, then crops the anchor's part (imaging's `Fill`).
fn fill(img: &DynamicImage, w: u32, h: u32, mode: ThumbMode, filter: FilterType) -> DynamicImage {
    let (ow, oh) = (img.width().max(1) as f64, img.height().max(1) as f64);
    let scale = (w as f64 / ow).max(h as f64 / oh);
    let (sw, sh) = (
        ((ow * scale).round() as u32).max(w),
        ((oh * scale).round() as u32).max(h),
    );
    let scaled = img.resize_exact(sw, sh, filter);
    let x = (sw - w) / 2;
    let y = match mode {
        ThumbMode::Top => 0,
        ThumbMode::Bottom => sh - h,
        _ => (sh - h) / 2,
    };
    scaled.crop_imm(x, y, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, _| {
            image::Rgb([(x % 256) as u8, 0, 0])
        }));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("png");
        out.into_inner()
    }

    fn dims(bytes: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory(bytes).expect("decode");
        (img.width(), img.height())
    }

    #[test]
    fn every_thumb_format_has_pocketbases_dimensions() {
        let original = png(400, 200);
        let cases = [
            ("100x100", (100, 100)),
            ("100x50t", (100, 50)),
            ("50x100b", (50, 100)),
            ("100x100f", (100, 50)),
            ("1000x1000f", (400, 200)),
            ("0x50", (100, 50)),
            ("100x0", (100, 50)),
            ("800x0", (800, 400)),
        ];
        for (size, want) in cases {
            let t = ThumbSize::parse(size).expect("size");
            let (bytes, ct) = generate(&original, "image/png", t).expect(size);
            assert_eq!(ct, "image/png");
            assert_eq!(dims(&bytes), want, "{size}");
        }
    }

    #[test]
    fn jpeg_stays_jpeg_and_garbage_is_an_error() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(30, 20));
        let mut jpg = Cursor::new(Vec::new());
        img.write_to(&mut jpg, ImageFormat::Jpeg).expect("jpeg");
        let t = ThumbSize::parse("10x10").expect("size");
        let (bytes, ct) = generate(jpg.get_ref(), "image/jpeg", t).expect("thumb");
        assert_eq!((ct, dims(&bytes)), ("image/jpeg", (10, 10)));
        assert!(generate(b"not an image", "image/png", t).is_err());
    }
}
