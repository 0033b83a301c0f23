#!/bin/sh
# Test wrapper for the job scripts (ASYNCRL_CMD="sh tests/slurm/where.sh build/asyncrl"): each
# rank prints where it runs and which GPUs it sees, then becomes the real program.
#   placement: rank R on NODE gpus DEVICES
rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-?}}}
[ -n "${OMPI_COMM_WORLD_RANK:-}" ] && rank=$OMPI_COMM_WORLD_RANK
echo "placement: rank $rank on ${SLURMD_NODENAME:-$(hostname)} gpus ${CUDA_VISIBLE_DEVICES:-none}"
exec "$@"
