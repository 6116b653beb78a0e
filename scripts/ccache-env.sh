# shellcheck shell=sh
# The ccache settings of every build of the project, sourced from the source root
# (scripts/setup.sh, build-cuda.sh, sanitize.sh, fuzz.sh and the Dockerfile's build stage):
# under them, builds of the same sources hit each other's entries whatever folder the
# clone is in (CI clones afresh; the image compiles under /src).
# Paths under the source root are hashed as relative ones.
export CCACHE_BASEDIR="$PWD"
# Precompiled headers are only cacheable with this sloppiness.
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
# Debug builds hash the build folder otherwise: clones in other folders would never hit.
export CCACHE_NOHASHDIR=1
