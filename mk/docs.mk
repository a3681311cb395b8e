# Reference manual: LDoc reads the doc comments of lua/copas.lua and
# lua/copas/*.lua (config.ld) and writes HTML to docs/reference/.
#
#   make docs
#
# A non-zero exit of LDoc, or any line it prints besides its two progress
# lines (warnings name file:line; a module without items, a missing markdown
# formatter) fails the target, so it can gate CI. lua-discount is LDoc's markdown
# formatter (Debian's lua-ldoc ships none of its own). The guide
# (docs/guide/*.md) is included as LDoc topics.

.PHONY: docs docs-deps
docs: docs-deps
	@rm -rf docs/reference
	@out="$$(ldoc . 2>&1)"; rc=$$?; printf '%s\n' "$$out"; \
	if [ $$rc -ne 0 ]; then echo "docs: ldoc exited with status $$rc"; exit 1; fi; \
	if printf '%s\n' "$$out" | grep -Ev '^(reading configuration from |output written to )' | grep -q .; then \
	  echo "docs: ldoc reported problems (above)"; exit 1; fi
	@# links between guide pages point at .md files: in the HTML they go to
	@# <page>.md.html; links out of the guide (../robustness.md, ../../bench/)
	@# climb one more level: docs/reference/topics/ is one deeper than docs/guide/
	@perl -pi -e 's{href="([A-Za-z0-9_-]+)\.md(?:#[^"]*)?"}{href="$$1.md.html"}g; \
	  s{href="\.\./(?!index\.html|ldoc\.css|modules/|topics/)}{href="../../}g' \
	  docs/reference/topics/*.html
	@echo "docs: open docs/reference/index.html"

docs-deps:
	@scripts/deps.sh docs
