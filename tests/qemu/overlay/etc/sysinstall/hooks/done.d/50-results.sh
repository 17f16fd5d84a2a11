# After an unattended install: hand the host the install's stdout.
cp /run/install.out /run/results/install.out 2>/dev/null
# The summary frame the upgrader keeps (sysinstall.events=console).
cp /run/sysinstall/summary /run/results/summary 2>/dev/null
echo "$rc" >/run/results/install.rc
save_results
