//! Capture: turning what clients send (and, later, what sources produce) into RGB frames.

mod image;

pub use image::{ImageError, ImageLimits, decode_image};
