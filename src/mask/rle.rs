//! pycocotools' compressed RLE (`maskUtils.encode`): column-major runs that start with zeros,
//! written with `rleToString`'s 5-bit, delta-coded, ASCII-offset variable-length scheme.

use opencv::core::Mat;
use opencv::prelude::*;

use super::{MaskError, MaskImage};

/// pycocotools' compressed RLE: `size = [height, width]`, `counts` as `rleToString` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoRle {
    pub size: [u32; 2],
    pub counts: String,
}

/// Run lengths over the mask in column-major order, the first run counting zeros.
pub fn column_major_runs(mask: &impl MaskImage) -> Result<Vec<u32>, MaskError> {
    // Transposing first turns the column-major walk into a contiguous row-major one.
    let mut transposed = Mat::default();
    opencv::core::transpose(mask, &mut transposed)?;
    let mut runs = Vec::new();
    let mut current = false;
    let mut length = 0u32;
    for &v in transposed.data_bytes()? {
        let on = v != 0;
        if on != current {
            runs.push(length);
            current = on;
            length = 0;
        }
        length += 1;
    }
    runs.push(length);
    Ok(runs)
}

/// `rleToString` from pycocotools' maskApi.c.
pub fn coco_counts_string(runs: &[u32]) -> String {
    let mut out = String::with_capacity(runs.len() * 2);
    for (i, &run) in runs.iter().enumerate() {
        let mut x = i64::from(run);
        if i > 2 {
            x -= i64::from(runs[i - 2]);
        }
        loop {
            let mut c = (x & 0x1f) as u8;
            x >>= 5;
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            out.push(char::from(c + 48));
            if !more {
                break;
            }
        }
    }
    out
}

pub fn encode_coco_rle(mask: &impl MaskImage) -> Result<CocoRle, MaskError> {
    let runs = column_major_runs(mask)?;
    Ok(CocoRle { size: [mask.rows() as u32, mask.cols() as u32], counts: coco_counts_string(&runs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: usize, cols: usize, on: &[(usize, usize)]) -> Mat {
        let mut data = vec![0u8; rows * cols];
        for &(r, c) in on {
            data[r * cols + c] = 255;
        }
        Mat::new_rows_cols_with_data(rows as i32, cols as i32, &data).unwrap().try_clone().unwrap()
    }

    #[test]
    fn runs_are_column_major_and_start_with_zeros() {
        // 2x3, ones at (row 0, col 1) and (row 1, col 1): column-major 0,0 | 1,1 | 0,0
        let m = mask(2, 3, &[(0, 1), (1, 1)]);
        assert_eq!(column_major_runs(&m).unwrap(), vec![2, 2, 2]);
        let m = mask(2, 2, &[(0, 0)]);
        assert_eq!(column_major_runs(&m).unwrap(), vec![0, 1, 3]);
    }

    #[test]
    fn counts_string_matches_pycocotools() {
        // pycocotools.mask.encode(np.asfortranarray(m)) for the masks above and a long run.
        assert_eq!(coco_counts_string(&[2, 2, 2]), "222");
        assert_eq!(coco_counts_string(&[0, 1, 3]), "013");
        assert_eq!(coco_counts_string(&[100, 5, 20, 1000]), "T35d0So0");
    }
}
