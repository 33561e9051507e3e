//! samstream's mask encoders on masks whose truth is known (solid shapes, a ring, single
//! pixels, shapes touching every border), cross-checked with pycocotools.

mod common;

use opencv::core::{CV_8UC1, Mat, Point, Rect, Scalar, Size};
use opencv::imgproc::{FILLED, LINE_8};
use opencv::prelude::*;
use samstream::mask::{self, MaskFormat};
use samstream::proto::{self, mask::Data};
use samstream::server::convert;

/// The mask as clients receive it: encoded, then as its message.
fn wire(truth: &Mat, format: MaskFormat) -> Data {
    convert::mask(mask::encode(truth, format).unwrap()).data.unwrap()
}

fn encoded(truth: &Mat) -> common::EncodedMask {
    let Data::CocoRle(rle) = wire(truth, MaskFormat::CocoRle) else { panic!() };
    let Data::Png(png) = wire(truth, MaskFormat::Png) else { panic!() };
    let Data::Polygons(polygons) = wire(truth, MaskFormat::Polygons) else { panic!() };
    let (area, bbox) = mask::area_and_box(truth).unwrap();
    common::EncodedMask { rle, png, polygons, area, bbox: convert::pixel_box(bbox) }
}

fn canvas(width: i32, height: i32) -> Mat {
    Mat::new_rows_cols_with_default(height, width, CV_8UC1, Scalar::all(0.0)).unwrap()
}

#[test]
fn solid_shapes_agree_in_every_encoding() {
    let mut m = canvas(301, 203);
    opencv::imgproc::ellipse(&mut m, Point::new(80, 90), Size::new(50, 30), 20.0, 0.0, 360.0, Scalar::all(255.0), FILLED, LINE_8, 0)
        .unwrap();
    opencv::imgproc::rectangle(&mut m, Rect::new(170, 40, 90, 120), Scalar::all(255.0), FILLED, LINE_8, 0).unwrap();
    opencv::imgproc::circle(&mut m, Point::new(150, 180), 15, Scalar::all(255.0), FILLED, LINE_8, 0).unwrap();
    let report = common::check_with_pycocotools(&encoded(&m), Some(m.data_bytes().unwrap()), 0.97);
    eprintln!("{report:?}");
    assert!(report.is_ok());
    assert_eq!(encoded(&m).polygons.polygons.len(), 3, "one outer contour per shape");
}

#[test]
fn rings_single_pixels_and_borders_round_trip() {
    let mut m = canvas(64, 48);
    // A ring (its hole is in RLE and PNG; polygons are outer contours only).
    opencv::imgproc::circle(&mut m, Point::new(20, 20), 12, Scalar::all(255.0), 4, LINE_8, 0).unwrap();
    // Pixels in corners and a full last column: runs that start and end on the borders.
    for (x, y) in [(0, 0), (63, 0), (0, 47), (40, 30)] {
        *m.at_2d_mut::<u8>(y, x).unwrap() = 255;
    }
    for y in 0..48 {
        *m.at_2d_mut::<u8>(y, 63).unwrap() = 1; // any non-zero value is inside
    }
    let report = common::check_with_pycocotools(&encoded(&m), Some(m.data_bytes().unwrap()), 0.0);
    eprintln!("{report:?}");
    assert!(report.is_ok());
}

#[test]
fn an_empty_mask_has_zero_area_and_box() {
    let m = canvas(10, 7);
    let (area, bbox) = mask::area_and_box(&m).unwrap();
    assert_eq!(area, 0);
    assert_eq!(convert::pixel_box(bbox), proto::Box::default());
    let Data::CocoRle(rle) = wire(&m, MaskFormat::CocoRle) else { panic!() };
    // pycocotools: encode(zeros((7, 10))) == {"size": [7, 10], "counts": b"V2"} (one run of 70 zeros).
    assert_eq!(rle.size, vec![7, 10]);
    assert_eq!(rle.counts, "V2");
}
