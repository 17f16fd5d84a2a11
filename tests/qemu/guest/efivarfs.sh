# shellcheck shell=sh
# efivarfs: the kernel's rules sysinstall's efivarfs code relies on
# (docs/spec/t234-boot-chain.md §3.4, §6.1), on real efivarfs over AAVMF.
# Each step records its status and the variable's bytes; the host judges.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
NEXT=BootChainFwNext-$NV_GUID

# 1. Created by one write of attributes and data; the kernel marks it immutable.
printf '\007\000\000\000\001\000\000\000' >"$EFIVARS/$NEXT"
fact create_rc $?
fact create_hex "$(var_hex "$NEXT")"
fact create_flags "$(lsattr "$EFIVARS/$NEXT" | cut -d' ' -f1)"

# 2. Overwriting it without clearing the flag is refused (EPERM).
# (stderr first: the failing redirection's message goes there)
printf '\007\000\000\000\000\000\000\000' 2>"$R/overwrite.err" >"$EFIVARS/$NEXT"
fact overwrite_immutable_rc $?
fact overwrite_immutable_hex "$(var_hex "$NEXT")"

# 3. After chattr -i: open with O_TRUNC and one write, as sysinstall writes
#    (src/sys/efivarfs.rs); the value is replaced, not truncated or appended.
chattr -i "$EFIVARS/$NEXT"
fact chattr_rc $?
printf '\007\000\000\000\000\000\000\000' >"$EFIVARS/$NEXT"
fact overwrite_rc $?
fact overwrite_hex "$(var_hex "$NEXT")"
fact overwrite_size "$(stat -c %s "$EFIVARS/$NEXT")"

# 4. Attributes and data in two write()s: the first (attributes alone)
#    deletes the variable, the second fails.
TWO=SysinstallTwoWrites-$NV_GUID
printf '\007\000\000\000\002\000\000\000' >"$EFIVARS/$TWO"
fact two_created_hex "$(var_hex "$TWO")"
chattr -i "$EFIVARS/$TWO"
printf '\007\000\000\000\003\000\000\000' | dd of="$EFIVARS/$TWO" bs=4 2>"$R/two.err"
fact two_writes_rc $?
[ -e "$EFIVARS/$TWO" ] && fact two_writes_left yes

# 5. A volatile variable (BS|RT, no NV) cannot be created from the OS: the
#    write fails; the file the open created stays, empty, until the next
#    mount (the firmware never has the variable: the host checks the store).
VOL=SysinstallVolatile-$NV_GUID
printf '\006\000\000\000\001\000\000\000' >"$EFIVARS/$VOL" 2>"$R/volatile.err"
fact volatile_rc $?
[ -e "$EFIVARS/$VOL" ] && fact volatile_left_size "$(stat -c %s "$EFIVARS/$VOL")"

# 6. Deleting a variable the host seeded: chattr -i, then unlink.
DEL=SysinstallDeleteMe-$NV_GUID
fact seeded_delete_hex "$(var_hex "$DEL")"
rm -f "$EFIVARS/$DEL" 2>"$R/delete-immutable.err"
[ -e "$EFIVARS/$DEL" ] && fact delete_immutable_left yes
chattr -i "$EFIVARS/$DEL" && rm "$EFIVARS/$DEL"
fact delete_rc $?

# 7. A variable that must survive the power-off (the host reads the store,
#    the next boot reads efivarfs).
PERSIST=SysinstallPersist-$NV_GUID
printf '\007\000\000\000%s' "$(cat /installer/token)" >"$EFIVARS/$PERSIST"
fact persist_rc $?
fact persist_hex "$(var_hex "$PERSIST")"
dump_vars >"$R/vars"
