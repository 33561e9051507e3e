//! The viewer's committed bundle (viewer/dist, which the server embeds) is what its sources
//! build to: protobuf-es code generated from proto/, type-checked, bundled by esbuild with the
//! locked packages. A change to the page, the proto or a package without a rebuild fails here.

use std::path::Path;
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_committed_bundle_is_what_the_sources_build_to() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let viewer = root.join("viewer");
    let modules = viewer.join("node_modules");
    assert!(modules.exists(), "viewer/node_modules is missing: run the suite with `bash scripts/test.sh`");
    let work = tempfile::tempdir().unwrap();
    copy_tree(&root.join("proto"), &work.path().join("proto"));
    let copy = work.path().join("viewer");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["package.json", "package-lock.json", "buf.gen.yaml", "tsconfig.json"] {
        std::fs::copy(viewer.join(file), copy.join(file)).unwrap();
    }
    copy_tree(&viewer.join("src"), &copy.join("src"));
    let _ = std::fs::remove_dir_all(copy.join("src/gen"));
    std::os::unix::fs::symlink(std::fs::canonicalize(&modules).unwrap(), copy.join("node_modules")).unwrap();
    let output = Command::new("npm").args(["run", "build", "--silent"]).current_dir(&copy).output().expect("npm runs");
    assert!(
        output.status.success(),
        "npm run build failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let built = copy.join("dist");
    let mut names: Vec<_> = std::fs::read_dir(&built).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let mut committed: Vec<_> = std::fs::read_dir(viewer.join("dist")).unwrap().map(|e| e.unwrap().file_name()).collect();
    committed.sort();
    assert_eq!(names, committed, "the files in viewer/dist");
    for name in names {
        let fresh = std::fs::read(built.join(&name)).unwrap();
        let kept = std::fs::read(viewer.join("dist").join(&name)).unwrap();
        assert!(
            fresh == kept,
            "viewer/dist/{} is not what its sources build to: run `npm run build` in viewer/ and commit dist/",
            name.to_string_lossy()
        );
    }
}
