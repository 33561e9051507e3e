//! Prompts for `samstream client`: `--point [ID:]x,y[,neg]` and `--box [ID:]x0,y0,x1,y1` flags
//! (object 1 without an id), and a JSON script of timed prompt updates:
//!
//! ```json
//! {"updates": [
//!   {"at": 0.0, "upsert": [{"id": 1, "points": [[100, 120], [140, 90, "neg"]], "box": [10, 20, 200, 220]}]},
//!   {"at": 2.5, "remove": [1]},
//!   {"at": 4.0, "clear": true}
//! ]}
//! ```
//!
//! `at` is seconds of stream time: the frame's timestamp for a video file, wall-clock time since
//! the start otherwise.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::proto;

/// One flag's prompt, with the object it belongs to.
#[derive(Debug, Clone)]
pub struct Tagged<T> {
    pub object_id: u32,
    pub prompt: T,
}

fn split_id(text: &str) -> Result<(u32, &str), String> {
    match text.split_once(':') {
        Some((id, rest)) => Ok((id.trim().parse().map_err(|_| format!("object id `{id}` is not a number"))?, rest)),
        None => Ok((1, text)),
    }
}

fn numbers(text: &str, expected: usize) -> Result<Vec<f32>, String> {
    let values: Vec<f32> =
        text.split(',').take(expected).map(|v| v.trim().parse::<f32>().map_err(|e| format!("`{v}`: {e}"))).collect::<Result<_, _>>()?;
    if values.len() != expected {
        return Err(format!("expected {expected} comma-separated numbers"));
    }
    Ok(values)
}

fn label(text: Option<&str>) -> Result<proto::PointLabel, String> {
    match text.map(str::trim) {
        None | Some("pos") => Ok(proto::PointLabel::Positive),
        Some("neg") => Ok(proto::PointLabel::Negative),
        Some(other) => Err(format!("label must be pos or neg, got {other}")),
    }
}

pub fn parse_point(text: &str) -> Result<Tagged<proto::Point>, String> {
    let (object_id, rest) = split_id(text)?;
    let v = numbers(rest, 2)?;
    let label = label(rest.split(',').nth(2))?;
    Ok(Tagged { object_id, prompt: proto::Point { x: v[0], y: v[1], label: label as i32 } })
}

pub fn parse_box(text: &str) -> Result<Tagged<proto::Box>, String> {
    let (object_id, rest) = split_id(text)?;
    let v = numbers(rest, 4)?;
    Ok(Tagged { object_id, prompt: proto::Box { x0: v[0], y0: v[1], x1: v[2], y1: v[3] } })
}

/// Groups the flags' prompts into objects, by id.
pub fn objects_from_flags(points: &[Tagged<proto::Point>], boxes: &[Tagged<proto::Box>]) -> Vec<proto::ObjectPrompt> {
    let mut objects: BTreeMap<u32, proto::ObjectPrompt> = BTreeMap::new();
    let object = |objects: &mut BTreeMap<u32, proto::ObjectPrompt>, id: u32| {
        objects.entry(id).or_insert_with(|| proto::ObjectPrompt { object_id: id, ..Default::default() }).clone()
    };
    for p in points {
        let mut o = object(&mut objects, p.object_id);
        o.points.push(p.prompt);
        objects.insert(p.object_id, o);
    }
    for b in boxes {
        let mut o = object(&mut objects, b.object_id);
        o.r#box = Some(b.prompt);
        objects.insert(b.object_id, o);
    }
    objects.into_values().collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    updates: Vec<ScriptUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptUpdate {
    at: f64,
    #[serde(default)]
    upsert: Vec<ScriptObject>,
    #[serde(default)]
    remove: Vec<u32>,
    #[serde(default)]
    clear: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptObject {
    id: u32,
    #[serde(default)]
    points: Vec<ScriptPoint>,
    #[serde(default, rename = "box")]
    bbox: Option<[f32; 4]>,
}

/// `[x, y]` (positive) or `[x, y, "pos" | "neg"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScriptPoint {
    Positive(f32, f32),
    Labelled(f32, f32, String),
}

/// A prompt update due at `at` seconds of stream time (revision filled in when sent).
#[derive(Debug, Clone)]
pub struct TimedUpdate {
    pub at: f64,
    pub update: proto::PromptUpdate,
}

pub fn load_script(path: &Path) -> anyhow::Result<Vec<TimedUpdate>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ScriptFile = serde_json::from_str(&text).with_context(|| format!("parsing the prompt script {}", path.display()))?;
    let mut updates = Vec::new();
    for (i, u) in file.updates.into_iter().enumerate() {
        let mut upsert = Vec::new();
        for o in u.upsert {
            let mut points = Vec::new();
            for point in o.points {
                let (x, y, l) = match point {
                    ScriptPoint::Positive(x, y) => (x, y, None),
                    ScriptPoint::Labelled(x, y, l) => (x, y, Some(l)),
                };
                let label = label(l.as_deref()).map_err(|e| anyhow::anyhow!("updates[{i}] object {}: {e}", o.id))?;
                points.push(proto::Point { x, y, label: label as i32 });
            }
            let r#box = o.bbox.map(|[x0, y0, x1, y1]| proto::Box { x0, y0, x1, y1 });
            upsert.push(proto::ObjectPrompt { object_id: o.id, points, r#box });
        }
        anyhow::ensure!(u.at.is_finite() && u.at >= 0.0, "updates[{i}].at must be a non-negative number of seconds");
        updates.push(TimedUpdate { at: u.at, update: proto::PromptUpdate { upsert, remove: u.remove, clear: u.clear, revision: 0 } });
    }
    updates.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_group_into_objects_by_id() {
        let points = [parse_point("10,20").unwrap(), parse_point("2:30,40,neg").unwrap(), parse_point("1:5,6,pos").unwrap()];
        let boxes = [parse_box("2:1,2,3,4").unwrap()];
        let objects = objects_from_flags(&points, &boxes);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].object_id, 1);
        assert_eq!(objects[0].points.len(), 2);
        assert_eq!(objects[1].points[0].label, proto::PointLabel::Negative as i32);
        assert_eq!(objects[1].r#box, Some(proto::Box { x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 }));
        assert!(parse_point("x:1,2").is_err());
        assert!(parse_point("1,2,maybe").is_err());
        assert!(parse_box("1,2,3").is_err());
    }

    #[test]
    fn scripts_parse_sorted_and_refuse_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"updates": [{"at": 2, "remove": [1]}, {"at": 0.5, "upsert": [{"id": 1, "points": [[1, 2], [3, 4, "neg"]]}]}]}"#,
        )
        .unwrap();
        let script = load_script(&path).unwrap();
        assert_eq!(script[0].at, 0.5);
        assert_eq!(script[0].update.upsert[0].points[1].label, proto::PointLabel::Negative as i32);
        assert_eq!(script[1].update.remove, vec![1]);
        std::fs::write(&path, r#"{"updates": [{"at": 1, "move": [1]}]}"#).unwrap();
        assert!(load_script(&path).is_err());
    }
}
