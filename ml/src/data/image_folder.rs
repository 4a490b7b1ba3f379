//! A folder of PNG or JPEG images (decoded with the `image` crate).
//!
//! Images directly in the folder are unlabeled; images in sub-folders take the
//! sub-folder's name as their class (`cats/001.png`, classes numbered in sorted order).
//! Every image is converted to the plan's channels (1 = grayscale, 3 = RGB) and resized
//! to its height × width; values are scaled to `[0, 1]`. Decoding runs under limits, so a
//! hostile file cannot claim gigabytes.

use std::path::Path;

use anyhow::{bail, Context};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};
use rayon::prelude::*;

use super::source::{files_by_class, holds_files, DataSource, Loaded};
use super::windows::number_classes;
use super::{Dataset, SampleShape};

/// The widest or tallest image decoded, in pixels.
pub const MAX_SIDE: u32 = 8192;
/// The most images one folder may hold.
pub const MAX_IMAGES: usize = 2_000_000;

/// The extensions of the files the reader decodes.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn decode(path: &Path) -> anyhow::Result<DynamicImage> {
    let mut reader = ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    reader
        .decode()
        .with_context(|| format!("{}: not a decodable PNG or JPEG image", path.display()))
}

/// The values of one image converted to `shape` (channel-major, `[0, 1]`).
fn pixels(img: DynamicImage, shape: SampleShape) -> anyhow::Result<Vec<f32>> {
    let SampleShape::Image {
        channels,
        height,
        width,
    } = shape
    else {
        bail!("an image folder holds images, not {shape}");
    };
    let (w, h) = (width as u32, height as u32);
    let img = if img.width() == w && img.height() == h {
        img
    } else {
        img.resize_exact(w, h, FilterType::Triangle)
    };
    let plane = height * width;
    let mut out = vec![0.0f32; channels * plane];
    match channels {
        1 => {
            for (o, p) in out.iter_mut().zip(img.to_luma8().pixels()) {
                *o = f32::from(p.0[0]) / 255.0;
            }
        }
        3 => {
            for (i, p) in img.to_rgb8().pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = f32::from(p.0[c]) / 255.0;
                }
            }
        }
        c => bail!("images with {c} channels: use 1 (grayscale) or 3 (RGB)"),
    }
    Ok(out)
}

/// Loads every image of `dir` as samples of `shape`.
pub fn load(dir: &Path, shape: SampleShape) -> anyhow::Result<Dataset> {
    let files = files_by_class(dir, &EXTENSIONS, MAX_IMAGES)?;
    if files.is_empty() {
        bail!(
            "{}: no PNG or JPEG images (directly or in class sub-folders)",
            dir.display()
        );
    }
    let images: Vec<Vec<f32>> = files
        .par_iter()
        .map(|(f, _)| decode(f).and_then(|img| pixels(img, shape)))
        .collect::<anyhow::Result<_>>()?;
    let labeled = files.iter().all(|(_, c)| c.is_some());
    let (labels, num_classes) = if labeled {
        let names: Vec<String> = files.iter().filter_map(|(_, c)| c.clone()).collect();
        let (l, k) = number_classes(&names)?;
        (Some(l), k)
    } else {
        (None, 0)
    };
    Ok(Dataset {
        samples: images.into_iter().flatten().collect(),
        shape,
        labels,
        num_classes,
    })
}

/// A folder of PNG or JPEG images.
pub struct ImageFolder;

impl DataSource for ImageFolder {
    fn name(&self) -> &'static str {
        "image-folder"
    }
    fn holds(&self) -> &'static str {
        "PNG or JPEG images in a folder (class sub-folders optional)"
    }
    fn reads(&self, path: &Path, shape: SampleShape) -> bool {
        matches!(shape, SampleShape::Image { .. })
            && path.is_dir()
            && holds_files(path, &EXTENSIONS)
    }
    fn load(&self, path: &Path, shape: SampleShape) -> anyhow::Result<Loaded> {
        load(path, shape).map(Loaded::Pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn class_folders_label_resize_and_order_channels() {
        let dir = tempfile::tempdir().unwrap();
        for (class, colour) in [("blue", [0u8, 0, 255]), ("red", [255, 0, 0])] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            let img = RgbImage::from_pixel(16, 16, Rgb(colour));
            img.save(dir.path().join(class).join("a.png")).unwrap();
            // A larger JPEG of the same colour is resized to the plan's size.
            RgbImage::from_pixel(40, 30, Rgb(colour))
                .save(dir.path().join(class).join("b.jpg"))
                .unwrap();
        }
        let shape = SampleShape::Image {
            channels: 3,
            height: 8,
            width: 8,
        };
        let d = load(dir.path(), shape).unwrap();
        assert_eq!(d.len(), 4);
        assert_eq!(
            (d.labels.clone().unwrap(), d.num_classes),
            (vec![0, 0, 1, 1], 2)
        );
        let blue = d.sample(0);
        assert_eq!((blue[0], blue[64], blue[128]), (0.0, 0.0, 1.0));
        let red_jpeg = d.sample(3);
        assert!(
            red_jpeg[0] > 0.9 && red_jpeg[128] < 0.1,
            "{:?}",
            &red_jpeg[..3]
        );
        // Grayscale conversion of the same files.
        let gray = load(
            dir.path(),
            SampleShape::Image {
                channels: 1,
                height: 8,
                width: 8,
            },
        )
        .unwrap();
        assert_eq!(gray.dim(), 64);
        assert!(
            gray.sample(0)[0] < gray.sample(2)[0],
            "red is lighter than blue"
        );
    }

    #[test]
    fn loose_images_are_unlabeled_and_broken_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::from_pixel(4, 4, Rgb([9, 9, 9]))
            .save(dir.path().join("x.png"))
            .unwrap();
        let shape = SampleShape::Image {
            channels: 1,
            height: 4,
            width: 4,
        };
        let d = load(dir.path(), shape).unwrap();
        assert!(d.labels.is_none());
        std::fs::write(dir.path().join("y.png"), b"not a png").unwrap();
        let e = format!("{:#}", load(dir.path(), shape).unwrap_err());
        assert!(e.contains("y.png"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(load(empty.path(), shape).is_err());
    }
}
