# sysinstall at the head of a branch (AUTOREV), for developing sysinstall
# with Yocto. conf/layer.conf masks this recipe unless SYSINSTALL_DEVELOPMENT
# is "1"; then its version (0.1.0+git) wins over the pinned sysinstall_0.1.0.bb.
# The branch is read from the local clone the layer lives in, so following it
# needs no network either.
require sysinstall.inc

PV = "0.1.0+git${SRCPV}"
SYSINSTALL_BRANCH ??= "main"
SYSINSTALL_GIT_URI ??= "git://${SYSINSTALL_SRCDIR};protocol=file;branch=${SYSINSTALL_BRANCH}"
# nooelint: oelint.vars.autorev - the whole point of this opt-in recipe
SRCREV = "${AUTOREV}"

BBCLASSEXTEND = "native"
