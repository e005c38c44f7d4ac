# narwhal: build, test, install, package and benchmark.
# `make deps` installs every Debian package the other targets need.

PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib/narwhal
MANDIR   ?= $(PREFIX)/share/man
PYTHON   ?= /usr/bin/python3

CC       ?= cc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-Iworker-shim/src
ifeq ($(CI),true)
CFLAGS   += -Werror
endif
# No -lcurl: libcurl and its TLS, Kerberos and LDAP libraries would cost the
# master ~8 MB of RSS from start-up; curl_lib.c dlopens it only for ready_path.
# (-ldl is empty on glibc >= 2.34, needed before.)
LDLIBS   += -lev -linih -lsystemd -ldl -lm

PY_INCLUDES := $(shell $(PYTHON)-config --includes 2>/dev/null || $(PYTHON) -c 'import sysconfig;print("-I"+sysconfig.get_paths()["include"])')
# One build serves every interpreter >= 3.8: the stable ABI.
SHIM_CFLAGS := -O2 -g -std=c11 -D_GNU_SOURCE -fPIC -Wall -Wextra -Wno-unused-parameter \
	-Iworker-shim/src -DPy_LIMITED_API=0x03080000 $(PY_INCLUDES)
ifeq ($(CI),true)
SHIM_CFLAGS += -Werror
endif

# The master checks address lists (forwarded_allow_ips) with the workers'
# own parser, so that what it accepts a worker does.
MASTER_SRC := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c)) \
	worker-shim/src/core/front.c
MASTER_OBJ := $(MASTER_SRC:.c=.o)
SHIM_SRC   := $(wildcard worker-shim/src/*.c worker-shim/src/*/*.c)
SHIM_HDR   := $(wildcard worker-shim/src/*/*.h)
SHIM_SO    := worker-shim/narwhal_worker/_http.abi3.so
# TLS from libssl (engine/tls.c); the WebSocket core: SHA-1 and base64 from
# libcrypto, DEFLATE from zlib.
SHIM_LIBS  := -lssl -lcrypto -lz
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:.c=)
# The worker's HTTP core and engine link without Python (tests/unit/test_shim_*).
SHIM_UNIT_OBJ := $(patsubst %.c,%.o,$(wildcard worker-shim/src/core/*.c worker-shim/src/engine/*.c))
SHIM_UNIT_BIN := $(filter tests/unit/test_shim_%,$(UNIT_BIN))

DEBIAN_PACKAGES := build-essential pkg-config libev-dev libinih-dev \
	libsystemd-dev libcurl4-openssl-dev python3-dev python3-pytest \
	python3-flask python3-django python3-fastapi python3-starlette \
	python3-uvicorn python3-httptools python3-uvloop python3-requests \
	curl wrk gunicorn uwsgi uwsgi-plugin-python3 systemd procps \
	dpkg-dev clang-format python3-build python3-wheel python3-setuptools \
	python3-venv python3-prometheus-client prometheus \
	postgresql python3-psycopg2 python3-asyncpg git util-linux \
	clang libclang-rt-14-dev libssl-dev zlib1g-dev python3-websockets \
	python3-wsproto nginx python3-gevent python3-eventlet

.PHONY: all deps check unit integration run install uninstall clean fmt bench deb wheel \
	fuzz check-fuzz check-sanitize

all: narwhal $(SHIM_SO)

narwhal: supervisor/main.o $(MASTER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

supervisor/%.o: supervisor/%.c supervisor/*.h
	$(CC) $(CFLAGS) -c -o $@ $<

$(SHIM_SO): $(SHIM_SRC) $(SHIM_HDR)
	$(CC) $(SHIM_CFLAGS) -shared -o $@ $(SHIM_SRC) $(SHIM_LIBS)

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		echo "installing:" $$missing; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tests/unit/test_%: tests/unit/test_%.c $(MASTER_OBJ) tests/unit/tap.h
	$(CC) $(CFLAGS) -Isupervisor -o $@ $< $(MASTER_OBJ) $(LDLIBS)

$(SHIM_UNIT_OBJ): worker-shim/src/%.o: worker-shim/src/%.c $(SHIM_HDR)
	$(CC) $(CFLAGS) -Iworker-shim/src -c -o $@ $<

$(SHIM_UNIT_BIN): tests/unit/test_shim_%: tests/unit/test_shim_%.c $(SHIM_UNIT_OBJ) tests/unit/tap.h
	$(CC) $(CFLAGS) -Iworker-shim/src -o $@ $< $(SHIM_UNIT_OBJ) $(SHIM_LIBS)

# The WebSocket core alone: no Python, no master.
WS_CORE_SRC := $(wildcard worker-shim/src/core/ws_*.c)
tests/unit/test_ws: tests/unit/test_ws.c $(WS_CORE_SRC) \
		worker-shim/src/core/ws.h tests/unit/tap.h
	$(CC) $(CFLAGS) -Iworker-shim/src/core -o $@ $< $(WS_CORE_SRC) $(SHIM_LIBS)

# The worker core's proxy and access-log code is pure C: tested without
# Python, from its sources.
FRONT_SRC := worker-shim/src/core/front.c worker-shim/src/core/alogfmt.c \
	worker-shim/src/core/buf.c worker-shim/src/core/request.c

tests/unit/test_front: tests/unit/test_front.c $(FRONT_SRC) tests/unit/tap.h \
		worker-shim/src/core/front.h worker-shim/src/core/http.h
	$(CC) $(CFLAGS) -Iworker-shim/src -o $@ $< $(FRONT_SRC)

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "# $$t"; ./$$t || exit 1; done

integration: all
	$(PYTHON) -m pytest -q tests/integration

check: deps all unit integration

run: deps all
	./narwhal -c conf/example.ini

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/narwhal_worker \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 755 narwhal $(DESTDIR)$(BINDIR)/narwhal
	install -m 644 worker-shim/narwhal_worker/*.py $(SHIM_SO) \
		$(DESTDIR)$(LIBDIR)/narwhal_worker/
	install -m 644 supervisor/narwhal.8 $(DESTDIR)$(MANDIR)/man8/narwhal.8
	install -m 644 supervisor/narwhal.ini.5 $(DESTDIR)$(MANDIR)/man5/narwhal.ini.5

uninstall:
	rm -rf $(DESTDIR)$(BINDIR)/narwhal $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(MANDIR)/man8/narwhal.8 $(DESTDIR)$(MANDIR)/man5/narwhal.ini.5

fmt:
	clang-format -i supervisor/*.c supervisor/*.h worker-shim/src/*.c worker-shim/src/*/*.c worker-shim/src/*/*.h tests/unit/*.c tests/unit/*.h

bench: deps all tests/bench/wsbench
	$(PYTHON) tests/bench/bench.py

# The master and the worker extension built with ASan and UBSan, then the
# integration suite against them (tests/sanitize/run.sh): any report fails.
# Left out: test_memory (ASan's shadow memory is the RSS it measures),
# test_packaging (installs and packages the normal build) and test_gunicorn
# (its masters pick their interpreter as gunicorn would, not the sanitized
# one, and cannot load the sanitized extension).
SAN_DIR     := build/sanitize
SAN_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
SAN_LIBASAN  = $(realpath $(shell $(CC) -print-file-name=libasan.so))
SAN_SHIM    := $(SAN_DIR)/worker-shim/narwhal_worker/_http.abi3.so
SAN_TESTS   ?= $(filter-out %/test_memory.py %/test_packaging.py %/test_gunicorn.py,$(wildcard tests/integration/test_*.py))

$(SAN_DIR)/narwhal: $(MASTER_SRC) supervisor/main.c supervisor/*.h
	@mkdir -p $(@D)
	$(CC) $(filter-out -O2,$(CFLAGS)) $(SAN_FLAGS) -o $@ $(MASTER_SRC) supervisor/main.c $(LDLIBS)

$(SAN_SHIM): $(SHIM_SRC) $(SHIM_HDR) $(wildcard worker-shim/narwhal_worker/*.py)
	rm -rf $(SAN_DIR)/worker-shim
	mkdir -p $(SAN_DIR)/worker-shim
	cp -r worker-shim/narwhal_worker $(SAN_DIR)/worker-shim/
	rm -rf $(SAN_DIR)/worker-shim/narwhal_worker/*.so $(SAN_DIR)/worker-shim/narwhal_worker/__pycache__
	$(CC) $(SHIM_CFLAGS) $(SAN_FLAGS) -shared -o $@ $(SHIM_SRC) $(SHIM_LIBS)

$(SAN_DIR)/python: tests/sanitize/python.in
	@mkdir -p $(@D)
	sed 's|@LIBASAN@|$(SAN_LIBASAN)|' $< >$@
	chmod +x $@

check-sanitize: $(SAN_DIR)/narwhal $(SAN_SHIM) $(SAN_DIR)/python
	tests/sanitize/run.sh $(SAN_DIR) $(SAN_TESTS)

# libFuzzer harnesses (tests/fuzz/README.md): each tests/fuzz/fuzz_NAME.c
# links the worker's Python-free HTTP core, or the master's sources when
# NAME starts with config.
FUZZ_CC         ?= clang
FUZZ_FLAGS      := -g -O1 -std=c11 -D_GNU_SOURCE -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_BIN        := $(patsubst tests/fuzz/%.c,tests/fuzz/bin/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CORE       := $(or $(wildcard worker-shim/src/core/*.c),worker-shim/src/http_parser.c worker-shim/src/buf.c)
FUZZ_CORE_INC   := -Iworker-shim/src $(if $(wildcard worker-shim/src/core),-Iworker-shim/src/core)

FUZZ_MASTER_BIN := $(filter tests/fuzz/bin/fuzz_config%,$(FUZZ_BIN))

$(FUZZ_MASTER_BIN): tests/fuzz/bin/%: tests/fuzz/%.c $(MASTER_SRC) supervisor/*.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Isupervisor -Iworker-shim/src -o $@ $< $(MASTER_SRC) $(LDLIBS)

$(filter-out $(FUZZ_MASTER_BIN),$(FUZZ_BIN)): tests/fuzz/bin/%: tests/fuzz/%.c $(FUZZ_CORE) $(SHIM_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_CORE_INC) -o $@ $< $(FUZZ_CORE) $(SHIM_LIBS)

fuzz: $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do tests/fuzz/run.sh $$b $(FUZZ_SECONDS) || exit 1; done

# CI: a fixed budget per harness from the seeds alone; any crash fails.
check-fuzz: $(FUZZ_BIN)
	@work=$$(mktemp -d /tmp/nwfuzz-XXXXXX); \
	for b in $(FUZZ_BIN); do \
		tests/fuzz/run.sh $$b $(FUZZ_CI_SECONDS) $$work >$$work/log 2>&1 \
			|| { tail -60 $$work/log; echo "fuzz: $$b failed; inputs in $$work"; exit 1; }; \
		grep -E '^(fuzz:|stat::number_of_executed_units)' $$work/log; \
	done; rm -rf $$work

# The WebSocket load generator: C and epoll, so it is not the bottleneck.
tests/bench/wsbench: tests/bench/wsbench.c $(WS_CORE_SRC) worker-shim/src/core/ws.h
	$(CC) $(CFLAGS) -Iworker-shim/src/core -o $@ $< $(WS_CORE_SRC) $(SHIM_LIBS)

# narwhal_<version>_<arch>.deb, with dpkg-deb alone; see packaging/debian/.
DEB_VERSION := $(shell sed -n 's/^\#define NW_VERSION "\(.*\)"/\1/p' supervisor/master.h)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_ROOT    := debian-build/root
DEB_FILE    := narwhal_$(DEB_VERSION)_$(DEB_ARCH).deb

deb: all
	rm -rf debian-build $(DEB_FILE)
	$(MAKE) install DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr
	packaging/debian/build-deb.sh $(DEB_ROOT) $(DEB_VERSION) $(DEB_ARCH) $(DEB_FILE)

# dist/narwhal-<version>-cp38-abi3-<platform>.whl: pip install it into a
# virtualenv and venv/bin/narwhal runs that venv's python. No network.
WHEEL_STAGE := build/wheel

wheel: all
	rm -rf $(WHEEL_STAGE) && mkdir -p $(WHEEL_STAGE)/narwhal_worker dist
	cp packaging/wheel/setup.py packaging/wheel/setup.cfg narwhal $(WHEEL_STAGE)/
	cp worker-shim/narwhal_worker/*.py $(SHIM_SO) $(WHEEL_STAGE)/narwhal_worker/
	cd $(WHEEL_STAGE) && NARWHAL_VERSION=$(DEB_VERSION) $(PYTHON) -m build \
		--no-isolation --wheel --outdir $(CURDIR)/dist . >/dev/null
	@ls dist/narwhal-$(DEB_VERSION)-*.whl

clean:
	rm -rf build dist tests/fuzz/bin
	rm -f narwhal supervisor/*.o worker-shim/src/*/*.o $(SHIM_SO) $(UNIT_BIN) \
		tests/bench/wsbench
	rm -rf worker-shim/narwhal_worker/__pycache__ tests/*/__pycache__ .pytest_cache
