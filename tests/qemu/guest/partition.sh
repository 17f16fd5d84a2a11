# shellcheck shell=sh
# partition: the Orin Nano NVMe layout onto /dev/nvme0n1 with sysinstall,
# the kernel's partition nodes after each run.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
run layout sysinstall layout /installer/layout.xml --device /dev/nvme0n1 --format json
run partition sysinstall partition --layout /installer/layout.xml --device /dev/nvme0n1 --yes
list_parts nvme0n1 >"$R/nodes"
ls /dev/nvme0n1p* >"$R/devnodes" 2>&1
# Again over the table it wrote: the same table, and the nodes re-read.
run partition2 sysinstall partition --layout /installer/layout.xml --device /dev/nvme0n1 --yes
list_parts nvme0n1 >"$R/nodes2"
