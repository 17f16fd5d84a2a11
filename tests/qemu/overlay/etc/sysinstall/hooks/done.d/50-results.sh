# After an unattended install: hand the host the install's stdout.
cp /run/install.out /run/results/install.out 2>/dev/null
echo "$rc" >/run/results/install.rc
save_results
