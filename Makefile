# asyncrl — asynchronous RL for language models as one MPI job.
#
#   make            build build/asyncrl for CPU (OpenBLAS + OpenMP)
#   make CUDA=1     build build/cuda/asyncrl with nvcc, cuBLAS and NCCL
#   make deps       install the Debian packages that are missing (as root), or print the command
#   make run        deps + build + the default job (inputs/reverse.cfg on 3 ranks)
#   make test       deps + build + every test; ends with "N passed, N failed, N skipped"
#   make bench      benchmarks, results appended to benchmarks/RESULTS.md
#   make sanitize   the tests under ASan/UBSan (build/asan)
#   make test-slurm the Slurm job scripts under a throwaway local Slurm (installs it as root)
#   make docs       regenerate docs/CONFIG.md from `asyncrl defaults`
#
# Overrides (each found with pkg-config when not given):
#   MPICC, HDF5_CFLAGS, HDF5_LIBS, LIBCONFIG_CFLAGS, LIBCONFIG_LIBS, BLAS_CFLAGS, BLAS_LIBS,
#   CMOCKA_CFLAGS, CMOCKA_LIBS, CUDA_HOME, NCCL_HOME (a prefix), NCCL_LIB, MPI_INCLUDES, CUDA_ARCH, OPT,
#   NP_FLAGS

CUDA ?= 0
SANITIZE ?= 0
MPICC ?= mpicc
PKG := pkg-config
OPT ?= -O2

pkg_cflags = $(shell $(PKG) --cflags $(1) 2>/dev/null)
pkg_libs = $(shell $(PKG) --libs $(1) 2>/dev/null)
pkg_found = $(shell $(PKG) --exists $(1) 2>/dev/null && echo 1)

HDF5_PKG := $(if $(call pkg_found,hdf5-openmpi),hdf5-openmpi,hdf5)
HDF5_CFLAGS ?= $(call pkg_cflags,$(HDF5_PKG))
HDF5_LIBS ?= $(call pkg_libs,$(HDF5_PKG))
LIBCONFIG_CFLAGS ?= $(call pkg_cflags,libconfig)
LIBCONFIG_LIBS ?= $(call pkg_libs,libconfig)
BLAS_CFLAGS ?= $(call pkg_cflags,openblas)
BLAS_LIBS ?= $(call pkg_libs,openblas)
CMOCKA_CFLAGS ?= $(call pkg_cflags,cmocka)
CMOCKA_LIBS ?= $(call pkg_libs,cmocka)
CUDA_HOME ?= /usr/local/cuda
# NCCL: NCCL_HOME is an install prefix (include/nccl.h, lib/libnccl.so), as NCCL's own build and
# cluster modules lay it out; without it, NCCL is looked for in CUDA_HOME and Debian's paths.
NCCL_LIB ?= $(firstword $(wildcard $(if $(NCCL_HOME),$(NCCL_HOME)/lib/libnccl.so $(NCCL_HOME)/lib64/libnccl.so) \
              $(CUDA_HOME)/lib/libnccl.so $(CUDA_HOME)/lib64/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

# What was found, printed once per make invocation (✓ found, ✗ missing).
have_mpi := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)
have_hdf5 := $(call pkg_found,$(HDF5_PKG))
have_hdf5_parallel := $(call pkg_found,hdf5-openmpi)
have_libconfig := $(call pkg_found,libconfig)
have_blas := $(call pkg_found,openblas)
have_cmocka := $(call pkg_found,cmocka)
have_nvcc := $(shell test -x $(CUDA_HOME)/bin/nvcc && echo 1)
have_nccl := $(if $(NCCL_LIB),1,)
mark = $(if $(1),✓,✗)
ifeq ($(MAKELEVEL),0)
ifneq ($(filter deps clean help,$(or $(MAKECMDGOALS),all)),$(or $(MAKECMDGOALS),all))  # (plain make: all)
$(info asyncrl dependencies: $(call mark,$(have_mpi)) MPI ($(MPICC))  $(call mark,$(have_hdf5)) HDF5  $(call mark,$(have_hdf5_parallel)) parallel HDF5  $(call mark,$(have_libconfig)) libconfig  $(call mark,$(have_blas)) OpenBLAS  $(call mark,$(have_cmocka)) cmocka  $(call mark,$(have_nvcc)) nvcc  $(call mark,$(have_nccl)) NCCL)
endif
endif

WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-psabi  # psabi: vec8.h passes 8-float vectors between always-inlined helpers
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -g -fopenmp $(WARN) -Isrc -Ikernels \
          $(HDF5_CFLAGS) $(LIBCONFIG_CFLAGS) $(BLAS_CFLAGS)
LDLIBS := $(HDF5_LIBS) $(LIBCONFIG_LIBS) $(BLAS_LIBS) -fopenmp -lm -lpthread
ifeq ($(have_blas),)
  CFLAGS += -DASYNCRL_NO_BLAS
endif

# MPI's include flags for nvcc, which does not go through mpicc: Open MPI's --showme:compile,
# else the -I words of MPICH's and Intel MPI's -show.
MPI_INCLUDES ?= $(or $(shell $(MPICC) --showme:compile 2>/dev/null),$(filter -I%,$(shell $(MPICC) -show 2>/dev/null)))

ifeq ($(CUDA),1)
  BUILD := build/cuda
  BACKEND_SRC := $(wildcard kernels/cuda/*.cu)
  NVCC := $(CUDA_HOME)/bin/nvcc
  NVCCFLAGS := -std=c++17 -O3 -lineinfo $(CUDA_ARCH) -Isrc -Ikernels -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
               -Werror all-warnings $(MPI_INCLUDES) $(if $(NCCL_HOME),-I$(NCCL_HOME)/include)
  CFLAGS += -DASYNCRL_CUDA -I$(CUDA_HOME)/include
  LDLIBS += -L$(CUDA_HOME)/lib64 -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(CUDA_HOME)/lib64 -Wl,-rpath,$(dir $(NCCL_LIB)) \
            -lcudart -lcublas -lcublasLt -lnccl -lstdc++
else ifeq ($(SANITIZE),1)
  BUILD := build/asan
  BACKEND_SRC := $(wildcard kernels/cpu/*.c)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
else
  BUILD := build
  BACKEND_SRC := $(wildcard kernels/cpu/*.c)
endif

SRC := $(filter-out src/main.c,$(wildcard src/*/*.c))
OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(SRC)) \
       $(patsubst %.c,$(BUILD)/obj/%.o,$(filter %.c,$(BACKEND_SRC))) \
       $(patsubst %.cu,$(BUILD)/obj/%.o,$(filter %.cu,$(BACKEND_SRC)))
MAIN_OBJ := $(BUILD)/obj/src/main.o
BIN := $(BUILD)/asyncrl
LIB := $(BUILD)/libasyncrl.a

TEST_SRC := $(wildcard tests/unit/test_*.c)
ifneq ($(CUDA),1)
  TEST_SRC := $(filter-out tests/unit/test_gpu_%,$(TEST_SRC))  # GPU tests: CUDA builds only
endif
TEST_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_COMMON := $(wildcard tests/unit/common/*.c)
MPI_TEST_SRC := $(wildcard tests/mpi/*.c)
MPI_TEST_BIN := $(patsubst tests/mpi/%.c,$(BUILD)/tests/mpi/%,$(MPI_TEST_SRC))

.PHONY: all deps run test test-unit test-integration bench bench-build sanitize clean help tests-build test-gpu \
        gpu-tests-on-cpu bench-gpu test-slurm docs
all: $(BIN)

# V=1 shows the full commands.
Q := $(if $(filter 1,$(V)),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(MPICC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(MPICC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(TEST_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST  $@")
	$(Q)$(MPICC) $(CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit $< $(TEST_COMMON) $(LIB) -o $@ $(CMOCKA_LIBS) $(LDLIBS)

# Programs that integration tests run under mpirun (not run directly by tests/run.sh).
$(BUILD)/tests/mpi/%: tests/mpi/%.c $(TEST_COMMON) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST  $@")
	$(Q)$(MPICC) $(CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit $< $(TEST_COMMON) $(LIB) -o $@ $(CMOCKA_LIBS) $(LDLIBS)

# GPU tests (tests/unit/test_gpu_*.c) compare each CUDA op with the CPU op on the same inputs.
# Both backends define the same ops_* symbols, so the CPU kernels are compiled a second time
# into a reference archive in which every global symbol they define gets the prefix ref_
# (objcopy --redefine-syms, the list taken from nm, so ops_* become ref_ops_* and no helper can
# clash with the build's own), and a header generated from kernels/ops.h declares them
# (ref_ops.h). Only the test_gpu_* binaries link it.
REF_SRC := $(filter-out kernels/cpu/collective.c,$(wildcard kernels/cpu/*.c))
REF_RAW := $(patsubst kernels/cpu/%.c,$(BUILD)/ref/raw/%.o,$(REF_SRC))
REF_OBJ := $(patsubst kernels/cpu/%.c,$(BUILD)/ref/%.o,$(REF_SRC))
REF_LIB := $(BUILD)/ref/libcpuref.a
REF_HDR := $(BUILD)/ref/include/ref_ops.h

$(BUILD)/ref/raw/%.o: kernels/cpu/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $< (reference copy)")
	$(Q)$(MPICC) $(CFLAGS) -MMD -MP -c $< -o $@

$(REF_LIB): $(REF_RAW)
	$(Q)nm -g --defined-only $(REF_RAW) | awk 'NF == 3 { print $$3, "ref_" $$3 }' | sort -u >$(BUILD)/ref/rename.txt
	$(Q)for o in $(REF_RAW); do objcopy --redefine-syms=$(BUILD)/ref/rename.txt $$o $(BUILD)/ref/$$(basename $$o) || exit 1; done
	$(Q)rm -f $@ && ar rcs $@ $(REF_OBJ)
	$(Q)if nm -g --defined-only $@ | awk 'NF == 3 && $$3 !~ /^ref_/' | grep .; then echo "$@: symbols left unrenamed"; exit 1; fi

$(REF_HDR): kernels/ops.h
	@mkdir -p $(dir $@)
	$(Q){ echo "// Generated by the Makefile from kernels/ops.h: the CPU backend's ops renamed ref_ops_*"; \
	  echo "// (ref/libcpuref.a), the reference the GPU tests compare the CUDA ops with."; \
	  echo "// Its types are renamed RefOps* and its constants REF_OPS_* (the same as the Ops* and OPS_* of ops.h)."; \
	  sed 's/\bops_/ref_ops_/g; s/\bOps\([A-Z]\)/RefOps\1/g; s/\bOPS_/REF_OPS_/g' kernels/ops.h; } >$@

$(BUILD)/tests/test_gpu_%: tests/unit/test_gpu_%.c $(TEST_COMMON) $(REF_LIB) $(REF_HDR) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST  $@")
	$(Q)$(MPICC) $(CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit -I$(dir $(REF_HDR)) $< $(TEST_COMMON) $(REF_LIB) $(LIB) -o $@ \
	  $(CMOCKA_LIBS) $(LDLIBS)

# The GPU tests built against the CPU backend (CPU compared with itself): checks that the test
# harness compiles and its logic holds on a machine without a GPU. `make gpu-tests-on-cpu`.
GPU_TEST_SRC := $(wildcard tests/unit/test_gpu_*.c)
GPU_ON_CPU_BIN := $(patsubst tests/unit/%.c,$(BUILD)/gpu-on-cpu/%,$(GPU_TEST_SRC))
$(BUILD)/gpu-on-cpu/%: tests/unit/%.c $(TEST_COMMON) $(REF_LIB) $(REF_HDR) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST  $@")
	$(Q)$(MPICC) $(CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit -I$(dir $(REF_HDR)) $< $(TEST_COMMON) $(REF_LIB) $(LIB) -o $@ \
	  $(CMOCKA_LIBS) $(LDLIBS)

gpu-tests-on-cpu: $(GPU_ON_CPU_BIN)
	@test "$(CUDA)" != 1 || { echo "gpu-tests-on-cpu is for the CPU build"; exit 2; }
	@for t in $(GPU_ON_CPU_BIN); do echo "# $$t"; CMOCKA_MESSAGE_OUTPUT=TAP OMP_NUM_THREADS=2 $$t || exit 1; done

# GPU benchmarks (benchmarks/gpu/*.c -> BUILD/bench/gpu/NAME): make CUDA=1 bench-gpu.
GPU_BENCH_BIN := $(patsubst benchmarks/gpu/%.c,$(BUILD)/bench/gpu/%,$(wildcard benchmarks/gpu/*.c))
$(BUILD)/bench/gpu/%: benchmarks/gpu/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BENCH $@")
	$(Q)$(MPICC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

bench-gpu:
	@test "$(CUDA)" = 1 || { echo "bench-gpu needs CUDA=1: make CUDA=1 bench-gpu"; exit 2; }
	@$(MAKE) --no-print-directory CUDA=1 $(BIN) $(GPU_BENCH_BIN)
	@sh benchmarks/gpu/run.sh $(BUILD)

tests-build: $(BIN) $(TEST_BIN) $(MPI_TEST_BIN) $(if $(filter 1,$(CUDA)),,$(GPU_ON_CPU_BIN))

# Benchmark harnesses: each benchmarks/*.c becomes BUILD/bench/NAME, linked like the tests.
BENCH_BIN := $(patsubst benchmarks/%.c,$(BUILD)/bench/%,$(wildcard benchmarks/*.c))
$(BUILD)/bench/%: benchmarks/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)
bench-build: $(BIN) $(BENCH_BIN)

deps:
	@sh scripts/deps.sh

# The default job: an SFT warm-up then asynchronous RL on reverse-text, 3 ranks. It starts over
# each time: the previous default run (runs/reverse) is removed first.
run: deps
	@$(MAKE) --no-print-directory all
	rm -rf runs/reverse
	sh scripts/mpirun.sh 3 $(BIN) rl inputs/reverse.cfg

test: deps
	@$(MAKE) --no-print-directory tests-build
	@sh tests/run.sh $(BUILD)

test-slurm: deps
	@$(MAKE) --no-print-directory tests-build
	@sh tests/slurm/run.sh $(BUILD)

docs: $(BIN)
	@sh scripts/gen_config_doc.sh $(BIN) >docs/CONFIG.md.tmp && mv docs/CONFIG.md.tmp docs/CONFIG.md
	@echo "wrote docs/CONFIG.md"

sanitize: deps
	@$(MAKE) --no-print-directory SANITIZE=1 tests-build
	@ASAN_OPTIONS=detect_leaks=0 sh tests/run.sh build/asan

test-gpu:
	@test "$(CUDA)" = 1 || { echo "test-gpu needs CUDA=1: make CUDA=1 test-gpu"; exit 2; }
	@$(MAKE) --no-print-directory CUDA=1 tests-build
	@sh tests/run.sh $(BUILD) gpu

bench: deps
	@$(MAKE) --no-print-directory bench-build $(if $(filter 1,$(CUDA)),$(GPU_BENCH_BIN))
	@ASYNCRL_CUDA=$(CUDA) sh benchmarks/run.sh $(BUILD)

clean:
	rm -rf build

help:
	@sed -n '1,15p' Makefile

-include $(shell find $(BUILD)/obj $(BUILD)/ref -name '*.d' 2>/dev/null)
