# Convenience targets; each is one command you can also run by hand.
.PHONY: test test-short bench fuzz vet

test:
	go test -race ./... && go -C compat/xbuild test ./...

test-short:
	go test -short ./...

vet:
	go vet ./...

# Every benchmark entry point, each ending in "NAME: FIGURE (target T): ok|MISS".
bench:
	@for b in bench/*.sh; do case $$b in */lib.sh) continue;; esac; echo "== $$b"; bash $$b || exit 1; done

# Run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$(go list ./...); do \
		for f in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done
