# The README's commands, for those who type make.
.PHONY: demo test bench bench-proxy bench-viewer images
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench-proxy:
	bash scripts/bench_proxy.sh
bench-viewer:
	bash scripts/bench_viewer.sh
bench:
	bash scripts/bench.sh
images:
	bash deploy/docker/build-images.sh
