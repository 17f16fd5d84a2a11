# sysinstall, pinned: the default. The development recipe (the branch head)
# is sysinstall_git.bb, enabled by SYSINSTALL_DEVELOPMENT = "1".
require sysinstall.inc

# The source is the git repository this layer lives in, read from its local
# clone (protocol=file): the layer parses and builds offline, with no
# published URL. SRCREV is a commit of that repository (a release, moved on
# by a commit of its own). A distro that builds from a published copy sets
# SYSINSTALL_GIT_URI, e.g. "git://git.example.com/sysinstall.git;protocol=https;branch=main",
# and SRCREV:pn-sysinstall.
SYSINSTALL_GIT_URI ??= "git://${SYSINSTALL_SRCDIR};protocol=file;nobranch=1"
SRCREV = "92291c2b896321a5c9717415d2dae26e9640ab7c"

BBCLASSEXTEND = "native"
