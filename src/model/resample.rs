//! Pillow's bilinear resampling of 8-bit RGB images, bit for bit.
//!
//! SamPredictor resizes with `torchvision.transforms.functional.resize` on a PIL image, i.e.
//! Pillow's `Image.resize(size, BILINEAR)`: a separable triangle filter whose support widens
//! with the scale when shrinking (antialiasing), fixed-point coefficients with 22 fraction
//! bits, a horizontal pass into an 8-bit intermediate, then a vertical pass. OpenCV has no
//! such filter (INTER_AREA and INTER_LINEAR both differ), so the parity contract with the
//! official predictor needs this port of Pillow's `Resample.c`.

const PRECISION_BITS: u32 = 32 - 8 - 2;
/// 1.0 in Pillow's fixed point: a pass's weighted sum, plus `ROUNDING`, shifted right by 22.
pub const FIXED_POINT_ONE: i32 = 1 << PRECISION_BITS;
pub const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);
const CHANNELS: usize = 3;

/// Per output pixel: the first input index and the fixed-point weights of the inputs it reads.
struct Coefficients {
    starts: Vec<usize>,
    lengths: Vec<usize>,
    weights: Vec<i32>,
    stride: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle filter's support is 1.0
    let stride = support.ceil() as usize * 2 + 1;
    let mut starts = Vec::with_capacity(out_size);
    let mut lengths = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * stride];
    let mut float_weights = vec![0f64; stride];
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        // C casts truncate toward zero; `as` does the same.
        let start = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let length = end.saturating_sub(start);
        let mut total = 0.0;
        for (i, w) in float_weights.iter_mut().take(length).enumerate() {
            *w = triangle((i as f64 + start as f64 - center + 0.5) / filter_scale);
            total += *w;
        }
        let row = &mut weights[out * stride..out * stride + length];
        for (fixed, &w) in row.iter_mut().zip(&float_weights) {
            let w = if total != 0.0 { w / total } else { w };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *fixed = if w < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
        }
        starts.push(start);
        lengths.push(length);
    }
    Coefficients { starts, lengths, weights, stride }
}

/// The weights of the pass `in_size -> out_size` as a dense `[in_size, out_size]` matrix of the
/// fixed-point integers, in float64 (exact): column `o` holds output `o`'s weights. The
/// preprocessing graph's horizontal pass multiplies rows of pixels by it.
pub fn weights_by_input(in_size: usize, out_size: usize) -> Vec<f64> {
    let c = coefficients(in_size, out_size);
    let mut dense = vec![0.0; in_size * out_size];
    for out in 0..out_size {
        for (i, &w) in c.weights[out * c.stride..][..c.lengths[out]].iter().enumerate() {
            dense[(c.starts[out] + i) * out_size + out] = f64::from(w);
        }
    }
    dense
}

/// The same weights as `[out_size, in_size]` (row `o` holds output `o`'s weights), for the
/// vertical pass, which multiplies columns of pixels from the left.
pub fn weights_by_output(in_size: usize, out_size: usize) -> Vec<f64> {
    let c = coefficients(in_size, out_size);
    let mut dense = vec![0.0; out_size * in_size];
    for out in 0..out_size {
        for (i, &w) in c.weights[out * c.stride..][..c.lengths[out]].iter().enumerate() {
            dense[out * in_size + c.starts[out] + i] = f64::from(w);
        }
    }
    dense
}

fn clip8(value: i32) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes a tightly packed RGB8 image (`width * height * 3` bytes) to `out_width x out_height`.
pub fn resize_rgb8(src: &[u8], width: usize, height: usize, out_width: usize, out_height: usize) -> Vec<u8> {
    assert_eq!(src.len(), width * height * CHANNELS, "RGB8 buffer does not match its size");
    if (width, height) == (out_width, out_height) {
        return src.to_vec();
    }
    let horizontal = coefficients(width, out_width);
    let vertical = coefficients(height, out_height);

    // As Pillow does, the horizontal pass only covers the rows the vertical pass will read.
    let first_row = vertical.starts[0];
    let last_row = vertical.starts[out_height - 1] + vertical.lengths[out_height - 1];
    let (temp, temp_width, row_offset) = if width != out_width {
        let rows = last_row - first_row;
        let mut temp = vec![0u8; rows * out_width * CHANNELS];
        for (y, out_row) in temp.chunks_exact_mut(out_width * CHANNELS).enumerate() {
            let in_row = &src[(y + first_row) * width * CHANNELS..][..width * CHANNELS];
            for (x, out_px) in out_row.chunks_exact_mut(CHANNELS).enumerate() {
                let start = horizontal.starts[x];
                let weights = &horizontal.weights[x * horizontal.stride..][..horizontal.lengths[x]];
                let mut sums = [ROUNDING; CHANNELS];
                for (i, &w) in weights.iter().enumerate() {
                    let px = &in_row[(start + i) * CHANNELS..][..CHANNELS];
                    for c in 0..CHANNELS {
                        sums[c] += i32::from(px[c]) * w;
                    }
                }
                for c in 0..CHANNELS {
                    out_px[c] = clip8(sums[c]);
                }
            }
        }
        (std::borrow::Cow::Owned(temp), out_width, first_row)
    } else {
        (std::borrow::Cow::Borrowed(src), width, 0)
    };
    if height == out_height {
        return temp.into_owned();
    }

    let row_len = temp_width * CHANNELS;
    let mut out = vec![0u8; out_height * row_len];
    let mut sums = vec![0i32; row_len];
    for (y, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let start = vertical.starts[y] - row_offset;
        let weights = &vertical.weights[y * vertical.stride..][..vertical.lengths[y]];
        sums.fill(ROUNDING);
        for (i, &w) in weights.iter().enumerate() {
            let in_row = &temp[(start + i) * row_len..][..row_len];
            for (sum, &v) in sums.iter_mut().zip(in_row) {
                *sum += i32::from(v) * w;
            }
        }
        for (o, &s) in out_row.iter_mut().zip(&sums) {
            *o = clip8(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_rgb8(&src, 4, 3, 4, 3), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        for (w, h) in [(10, 6), (100, 61), (37, 50)] {
            assert!(resize_rgb8(&src, 37, 23, w, h).iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn dense_weights_reproduce_the_separable_passes() {
        // One row of 7 pixels shrunk to 3: the matrix product, rounded and shifted as Pillow
        // does, equals the resampler's own output.
        let src: Vec<u8> = [3u8, 200, 17, 90, 255, 0, 128].iter().flat_map(|&v| [v, v, v]).collect();
        let expected = resize_rgb8(&src, 7, 1, 3, 1);
        let matrix = weights_by_input(7, 3);
        for out in 0..3 {
            let sum: f64 = (0..7).map(|i| f64::from(src[i * 3]) * matrix[i * 3 + out]).sum();
            let value = ((sum + f64::from(ROUNDING)) / f64::from(FIXED_POINT_ONE)).floor().clamp(0.0, 255.0);
            assert_eq!(value as u8, expected[out * 3], "output {out}");
        }
        let by_output = weights_by_output(7, 3);
        for out in 0..3 {
            for i in 0..7 {
                assert_eq!(by_output[out * 7 + i], matrix[i * 3 + out]);
            }
        }
    }

    #[test]
    fn halving_averages_neighbourhoods_like_pillow() {
        // Pillow: Image.frombytes("RGB", (4, 1), bytes([0,0,0, 100,100,100, 200,200,200, 40,40,40]))
        //   .resize((2, 1), Image.BILINEAR) -> [(71,)*3, (117,)*3].
        let src = [0, 0, 0, 100, 100, 100, 200, 200, 200, 40, 40, 40];
        let out = resize_rgb8(&src, 4, 1, 2, 1);
        assert_eq!(out, vec![71, 71, 71, 117, 117, 117]);
    }
}
