//! `samstream client`'s command line: one subcommand per input (an image, a video file, a
//! camera, a URL the server opens, a server-side source), each with the options that apply to
//! it. The flags of the single-command form (`--image PATH`, `--video PATH`, ...) still work
//! for one release: `legacy_form` rewrites them and says so.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::prompts::{Tagged, parse_box, parse_point};
use crate::proto;

/// Segment an image, or watch a stream's masks, through a running server.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Segment one image (JPEG, PNG, BMP, WebP), sent as encoded bytes: the prompted objects,
    /// or everything in it (--everything).
    Image {
        /// The image file.
        path: PathBuf,
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        prompts: PromptArgs,
        #[command(flatten)]
        outputs: OutputArgs,
        #[command(flatten)]
        everything: EverythingArgs,
    },
    /// Stream a local video file, frame by frame (every frame gets masks).
    Video {
        /// The video file.
        path: PathBuf,
        #[command(flatten)]
        run: StreamRun,
    },
    /// Stream a local camera.
    Camera {
        /// An index (0) or a device path (/dev/video0).
        device: String,
        #[command(flatten)]
        run: StreamRun,
    },
    /// Stream a network URI the server opens itself (allowed by its --allow-uri).
    Url {
        /// rtsp://, http(s):// or another URI the server's OpenCV opens.
        uri: String,
        #[command(flatten)]
        run: StreamRun,
    },
    /// Stream a server-side source by name (see ListSources).
    Source {
        /// The source's name in the server's --sources file.
        name: String,
        #[command(flatten)]
        run: StreamRun,
    },
}

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Server address.
    #[arg(long, env = "SAMSTREAM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Seconds to wait for the server's health to report SERVING (model loaded).
    #[arg(long, default_value_t = 120)]
    pub ready_timeout: u64,
}

/// The objects to segment.
#[derive(Debug, Clone, Args)]
pub struct PromptArgs {
    /// A point prompt `[ID:]x,y[,neg]` (object 1 without an id); repeatable.
    #[arg(long = "point", value_parser = parse_point)]
    pub points: Vec<Tagged<proto::Point>>,
    /// A box prompt `[ID:]x0,y0,x1,y1`; one per object.
    #[arg(long = "box", value_parser = parse_box)]
    pub boxes: Vec<Tagged<proto::Box>>,
    /// Return the three candidate masks with their scores.
    #[arg(long)]
    pub multimask: bool,
}

/// What is written besides the summary on stdout.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Overlay output: an image for `image`, an mp4 video for streams.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Directory for PNG masks (`object_<id>.png`, or `frame_<n>_object_<id>.png` for streams).
    #[arg(long, alias = "out-dir")]
    pub out_masks: Option<PathBuf>,
}

/// Everything a streaming subcommand takes besides its input.
#[derive(Debug, Clone, Args)]
pub struct StreamRun {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub prompts: PromptArgs,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub everything: EverythingArgs,
}

/// How a stream runs and ends.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// JSON script of timed prompt updates (see the README's "Streaming").
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Re-prompt each object from its previous mask.
    #[arg(long)]
    pub track: bool,
    /// Most frames per second the server processes (0 = as fast as it can).
    #[arg(long, default_value_t = 0.0)]
    pub max_fps: f32,
    /// Stop after this many results.
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// No live line on stderr (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// With --everything: segment every Nth processed frame.
    #[arg(long, requires = "everything", default_value_t = 1)]
    pub every_n_frames: u32,
}

/// Segment everything: every object in the image (SegmentEverything), or on a stream's frames
/// next to the prompted objects (StreamStart.auto_mode). Unset options are the server's
/// (the reference generator's) defaults.
#[derive(Debug, Clone, Args)]
pub struct EverythingArgs {
    /// Segment everything (no prompts needed).
    #[arg(long)]
    pub everything: bool,
    /// Grid points per side.
    #[arg(long, requires = "everything")]
    pub points_per_side: Option<u32>,
    /// Grid points per decoder call.
    #[arg(long, requires = "everything")]
    pub points_per_batch: Option<u32>,
    /// Keep masks whose predicted IoU is above this.
    #[arg(long, requires = "everything")]
    pub pred_iou_thresh: Option<f64>,
    /// Keep masks whose stability score is at least this.
    #[arg(long, requires = "everything")]
    pub stability_score_thresh: Option<f64>,
    /// Box IoU above which a duplicate is dropped.
    #[arg(long, requires = "everything")]
    pub box_nms_thresh: Option<f64>,
    /// Extra crop layers (each has its own encoder runs).
    #[arg(long, requires = "everything")]
    pub crop_n_layers: Option<u32>,
    /// Remove holes and islands smaller than this many pixels.
    #[arg(long, requires = "everything")]
    pub min_mask_region_area: Option<u32>,
}

impl EverythingArgs {
    pub fn options(&self) -> proto::AutoMaskOptions {
        proto::AutoMaskOptions {
            points_per_side: self.points_per_side,
            points_per_batch: self.points_per_batch,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_score_thresh: self.stability_score_thresh,
            box_nms_thresh: self.box_nms_thresh,
            crop_n_layers: self.crop_n_layers,
            min_mask_region_area: self.min_mask_region_area,
            ..Default::default()
        }
    }
}

/// The input flags of the single-command form and the subcommand each became.
const LEGACY_INPUTS: [(&str, &str); 5] =
    [("--image", "image"), ("--video", "video"), ("--camera", "camera"), ("--url", "url"), ("--source", "source")];

/// `samstream client --image p.jpg --point 1,2` as `samstream client image p.jpg --point 1,2`
/// (the same for --video, --camera, --url and --source), with a deprecation line on stderr;
/// any other command line as it is. `--flag=value` is understood too.
pub fn legacy_form(args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_none_or(|command| command != "client") {
        return args;
    }
    let client = 1;
    let rest = &args[client + 1..];
    if rest.first().is_some_and(|first| !first.to_string_lossy().starts_with('-')) {
        return args; // a subcommand (or help) already
    }
    for (index, arg) in rest.iter().enumerate() {
        let text = arg.to_string_lossy();
        for (flag, command) in LEGACY_INPUTS {
            let (value, taken) = match text.strip_prefix(flag) {
                Some("") => match rest.get(index + 1) {
                    Some(value) => (value.clone(), 2),
                    None => return args, // clap says what is missing
                },
                Some(inline) if inline.starts_with('=') => (OsString::from(&inline[1..]), 1),
                _ => continue,
            };
            eprintln!("note: `samstream client {flag} VALUE` is deprecated; use `samstream client {command} VALUE`");
            let mut rewritten: Vec<OsString> = args[..=client].to_vec();
            rewritten.push(command.into());
            rewritten.push(value);
            rewritten.extend(rest[..index].iter().cloned());
            rewritten.extend(rest[index + taken..].iter().cloned());
            return rewritten;
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_single_command_form_becomes_a_subcommand() {
        assert_eq!(
            legacy_form(line("samstream client --server s --image p.jpg --point 1,2")),
            line("samstream client image p.jpg --server s --point 1,2")
        );
        assert_eq!(legacy_form(line("samstream client --source=cam --quiet")), line("samstream client source cam --quiet"));
        assert_eq!(
            legacy_form(line("samstream client video v.mp4 --track")),
            line("samstream client video v.mp4 --track"),
            "new form unchanged"
        );
        assert_eq!(legacy_form(line("samstream serve --image x")), line("samstream serve --image x"), "other commands unchanged");
        assert_eq!(legacy_form(line("samstream serve --name client --image x")), line("samstream serve --name client --image x"));
        assert_eq!(legacy_form(line("samstream client --image")), line("samstream client --image"), "a missing value is clap's to report");
    }
}
