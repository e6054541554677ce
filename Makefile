# Convenience wrappers; the README's commands are ./dev.sh demo and ./dev.sh test.
.PHONY: setup demo test lint bench
setup demo test lint bench:
	./dev.sh $@
