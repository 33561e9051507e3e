//! scripts/gpu_bench.sh is run on a lent GPU only, so it must not rot where there is none: its
//! dry run on the CPU (`DEVICE=cpu QUICK=1`, a few requests per row, the GPU's data path)
//! completes every default phase within its limit and prints the table, with every row and
//! every Python section measured rather than failed.

mod common;

use std::path::Path;
use std::process::Command;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn the_gpu_benchmark_runs_on_the_cpu_and_prints_its_table() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg("scripts/gpu_bench.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DEVICE", "cpu")
        .env("QUICK", "1")
        .env("OUT", out.path())
        .env("SAMSTREAM_BIN", env!("CARGO_BIN_EXE_samstream"))
        .env("SAMSTREAM_MODEL_DIR", common::model_dir())
        .env("SAMSTREAM_PYTHON", common::python())
        .env("ORT_DYLIB_PATH", common::ort_lib())
        .output()
        .expect("bash runs");
    let table = String::from_utf8_lossy(&run.stdout);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "gpu_bench.sh failed: {}\n{log}", run.status);
    assert!(!log.contains("stopped (rc"), "a phase ran past its limit or failed:\n{log}");
    for heading in ["### Step 0", "### Latency, one caller (ms)", "### Throughput", "### Fidelity", "### Goals", "Phases (wall time, s)"] {
        assert!(table.contains(heading), "{heading} missing from the table:\n{table}");
    }
    let rows = out.path().join("rows");
    for row in
        ["segment_jpeg_1", "segment_raw_8", "prompt_1", "callers8_batch_auto", "callers8_batch1", "callers8_exact_shapes", "source120"]
    {
        let figures = json(&rows.join(format!("{row}.json")));
        assert!(figures.get("failed").is_none() && figures["latency_ms"]["p50"].as_f64().is_some(), "{row}: {figures}");
    }
    let probe = json(&rows.join("probe.json"));
    assert!(
        probe["encoder"]["cpu"]["b1_alternating_ms"].as_f64().is_some() && probe["decoder"]["n3_alternating_ms"].as_f64().is_some(),
        "{probe}"
    );
    let python = json(&rows.join("python.json"));
    for section in ["raw_ort", "pipeline", "pytorch", "fidelity"] {
        assert!(python[section].is_object() && python[section].get("failed").is_none(), "python {section}: {}", python[section]);
    }
    let data_path = std::fs::read_to_string(out.path().join("logs/exact.log")).unwrap();
    assert!(data_path.contains("data_path=device"), "the dry run takes the GPU's data path");
    eprintln!("{table}");
}
