//! What `samstream client` writes: frames with each object's mask tinted in its own colour,
//! its box and id (an mp4 for streams, an image for --image), and per-frame PNG masks.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc, videoio};

use crate::proto;

/// Tint colours (BGR), by object id; ids beyond the palette wrap around.
const PALETTE: [(f64, f64, f64); 8] = [
    (255.0, 64.0, 0.0),
    (0.0, 200.0, 255.0),
    (0.0, 255.0, 64.0),
    (255.0, 0.0, 200.0),
    (0.0, 64.0, 255.0),
    (255.0, 255.0, 0.0),
    (128.0, 0.0, 255.0),
    (0.0, 255.0, 200.0),
];
/// Share of the tint colour in a masked pixel.
pub const TINT_ALPHA: f64 = 0.5;

pub fn colour(object_id: u32) -> Scalar {
    let (b, g, r) = PALETTE[object_id as usize % PALETTE.len()];
    Scalar::new(b, g, r, 0.0)
}

/// The PNG mask of an object as CV_8UC1 (255 inside), or None for other encodings.
pub fn decode_mask(object: &proto::ObjectMask) -> anyhow::Result<Option<Mat>> {
    match object.mask.as_ref().and_then(|m| m.data.as_ref()) {
        Some(proto::mask::Data::Png(png)) => {
            let mask = imgcodecs::imdecode(&Vector::<u8>::from_slice(png), imgcodecs::IMREAD_GRAYSCALE)?;
            if mask.empty() {
                bail!("object {}: undecodable PNG mask", object.object_id);
            }
            Ok(Some(mask))
        }
        _ => Ok(None),
    }
}

/// Draws every object onto `frame` (BGR): tinted mask, box, and `id score` above the box.
pub fn draw(frame: &mut Mat, objects: &[(u32, f32, Mat, proto::Box)]) -> anyhow::Result<()> {
    for (id, _, mask, _) in objects {
        let solid = Mat::new_size_with_default(frame.size()?, frame.typ(), colour(*id))?;
        let mut tinted = Mat::default();
        opencv::core::add_weighted(&*frame, 1.0 - TINT_ALPHA, &solid, TINT_ALPHA, 0.0, &mut tinted, -1)?;
        tinted.copy_to_masked(frame, mask)?;
    }
    for (id, score, _, bbox) in objects {
        if bbox.x1 <= bbox.x0 || bbox.y1 <= bbox.y0 {
            continue;
        }
        let rect = Rect::new(bbox.x0 as i32, bbox.y0 as i32, (bbox.x1 - bbox.x0) as i32, (bbox.y1 - bbox.y0) as i32);
        imgproc::rectangle(frame, rect, colour(*id), 2, imgproc::LINE_8, 0)?;
        let label = format!("{id} {score:.2}");
        let origin = Point::new(rect.x + 2, (rect.y - 4).max(12));
        imgproc::put_text(frame, &label, origin, imgproc::FONT_HERSHEY_SIMPLEX, 0.45, colour(*id), 1, imgproc::LINE_AA, false)?;
    }
    Ok(())
}

/// The objects' decoded PNG masks with what `draw` labels them with.
fn drawable(objects: &[proto::ObjectMask]) -> anyhow::Result<Vec<(u32, f32, Mat, proto::Box)>> {
    let mut drawn = Vec::new();
    for object in objects {
        if let Some(mask) = decode_mask(object)? {
            drawn.push((object.object_id, object.score, mask, object.bbox.unwrap_or_default()));
        }
    }
    Ok(drawn)
}

/// Where the outputs go; both optional.
pub struct Outputs {
    video: Option<(PathBuf, Option<videoio::VideoWriter>)>,
    /// Frame rate of the overlay video: the input file's, else 10.
    frame_rate: f64,
    masks_dir: Option<PathBuf>,
    pub frames_written: u64,
}

impl Outputs {
    pub fn new(overlay: Option<&Path>, masks_dir: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(dir) = masks_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            video: overlay.map(|p| (p.to_path_buf(), None)),
            frame_rate: 10.0,
            masks_dir: masks_dir.map(Path::to_path_buf),
            frames_written: 0,
        })
    }

    /// Takes the input's frame rate; call before the first `write`.
    pub fn set_frame_rate(&mut self, fps: f64) {
        self.frame_rate = fps;
    }

    pub fn wants_masks(&self) -> bool {
        self.video.is_some() || self.masks_dir.is_some()
    }

    /// Writes one result: PNG masks as `frame_<id>_object_<id>.png` (automatic mode's as
    /// `frame_<id>_auto_<id>.png`) and the overlay frame.
    pub fn write(&mut self, frame: &mut Mat, result: &proto::FrameResult) -> anyhow::Result<()> {
        let auto = numbered(&result.auto_masks);
        if let Some(dir) = &self.masks_dir {
            for (kind, objects) in [("object", &result.objects), ("auto", &auto)] {
                for object in objects {
                    if let Some(proto::mask::Data::Png(png)) = object.mask.as_ref().and_then(|m| m.data.as_ref()) {
                        std::fs::write(dir.join(format!("frame_{:06}_{kind}_{}.png", result.frame_id, object.object_id)), png)?;
                    }
                }
            }
        }
        let Some((path, writer)) = &mut self.video else { return Ok(()) };
        // Automatic masks first: the prompted objects are drawn over them.
        draw(frame, &drawable(&auto)?)?;
        draw(frame, &drawable(&result.objects)?)?;
        if writer.is_none() {
            let size = Size::new(frame.cols(), frame.rows());
            let fourcc = videoio::VideoWriter::fourcc('m', 'p', '4', 'v')?;
            let opened = videoio::VideoWriter::new(path.as_path(), fourcc, self.frame_rate, size, true)?;
            if !opened.is_opened()? {
                bail!("cannot write the overlay video {} (OpenCV's FFmpeg backend, mp4v)", path.display());
            }
            *writer = Some(opened);
        }
        writer.as_mut().expect("opened above").write(frame)?;
        self.frames_written += 1;
        Ok(())
    }

    /// Writes a single overlay image (for --image).
    pub fn write_image(path: &Path, frame: &mut Mat, objects: &[proto::ObjectMask]) -> anyhow::Result<()> {
        draw(frame, &drawable(objects)?)?;
        if !imgcodecs::imwrite(path, frame, &Vector::new())? {
            bail!("cannot write {}", path.display());
        }
        Ok(())
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some((_, Some(writer))) = &mut self.video {
            writer.release()?;
        }
        Ok(())
    }
}

/// Automatic masks as objects to draw and write: their own ids (tracking), else numbered from 1
/// in the answer's order.
pub fn numbered(masks: &[proto::AutoMask]) -> Vec<proto::ObjectMask> {
    masks
        .iter()
        .enumerate()
        .map(|(i, m)| proto::ObjectMask {
            object_id: if m.object_id != 0 { m.object_id } else { i as u32 + 1 },
            mask: m.mask.clone(),
            score: m.predicted_iou,
            bbox: m.bbox,
            area: m.area,
            candidates: Vec::new(),
        })
        .collect()
}

/// For one image: PNG masks as `<kind>_<id>.png` in `masks_dir`, and the overlay image.
pub fn write_image_outputs(
    overlay: Option<&Path>,
    masks_dir: Option<&Path>,
    encoded: &[u8],
    objects: &[proto::ObjectMask],
    kind: &str,
) -> anyhow::Result<()> {
    if let Some(dir) = masks_dir {
        std::fs::create_dir_all(dir)?;
        for object in objects {
            if let Some(proto::mask::Data::Png(png)) = object.mask.as_ref().and_then(|m| m.data.as_ref()) {
                let path = dir.join(format!("{kind}_{}.png", object.object_id));
                std::fs::write(&path, png)?;
                println!("  mask written to {}", path.display());
            }
        }
    }
    if let Some(path) = overlay {
        let mut frame = imgcodecs::imdecode(&Vector::<u8>::from_slice(encoded), imgcodecs::IMREAD_COLOR)?;
        anyhow::ensure!(!frame.empty(), "cannot decode the image locally for the overlay");
        Outputs::write_image(path, &mut frame, objects)?;
        println!("overlay written to {}", path.display());
    }
    Ok(())
}

/// A result's preview frame (BGR) at the frame's size, to draw its masks on.
pub fn preview_frame(preview: &proto::PreviewFrame, width: u32, height: u32) -> anyhow::Result<Mat> {
    let frame = imgcodecs::imdecode(&Vector::<u8>::from_slice(&preview.jpeg), imgcodecs::IMREAD_COLOR)?;
    if frame.empty() {
        bail!("undecodable preview frame");
    }
    if (frame.cols() as u32, frame.rows() as u32) == (width, height) {
        return Ok(frame);
    }
    let mut sized = Mat::default();
    imgproc::resize(&frame, &mut sized, Size::new(width as i32, height as i32), 0.0, 0.0, imgproc::INTER_LINEAR)?;
    Ok(sized)
}

/// A neutral canvas for results of server-side sources without preview frames.
pub fn canvas(width: u32, height: u32) -> anyhow::Result<Mat> {
    Ok(Mat::new_rows_cols_with_default(height as i32, width as i32, opencv::core::CV_8UC3, Scalar::all(96.0))?)
}
