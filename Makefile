# The README's commands, for those who type make.
.PHONY: demo test bench images
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bench.sh
images:
	bash deploy/docker/build-images.sh
