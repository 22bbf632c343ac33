#!/usr/bin/env bash
# Install ai-sessions from a clone: build ai-sessctl, put it (and the
# `ai-session` alias) in PREFIX/bin, install shell completions, and hook
# the shell integration into ~/.zshrc / ~/.bashrc (and bash's login file).
# Idempotent; --uninstall undoes it all except the state directory.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./install.sh [--prefix DIR] [--no-modify-rc] [--binary FILE]
       ./install.sh --uninstall [--remove-instances] [--prefix DIR] [--no-modify-rc]

Builds ai-sessctl (cargo build --release --locked) and installs:
  PREFIX/bin/ai-sessctl, PREFIX/bin/ai-session -> ai-sessctl
  completions under PREFIX/share/{zsh,bash-completion,fish}
  a marked block in ~/.zshrc and ~/.bashrc (and in bash's login file,
  ~/.bash_profile or ~/.profile, unless it reads ~/.bashrc) that puts
  PREFIX/bin on PATH and loads the shell integration

Options:
  --prefix DIR     install under DIR (default: $PREFIX, else ~/.local)
  --no-modify-rc   leave the rc files alone
  --binary FILE    install this ai-sessctl instead of building one
  --uninstall      remove what install put in place (never the state dir)
  --remove-instances
                   with --uninstall: first stop and remove every instance of
                   this state home (ai-sessctl rm --all --force)
  -h, --help       show this help
EOF
}

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
did() { printf '  %s\n' "$*"; }

prefix="${PREFIX:-$HOME/.local}"
modify_rc=1
prebuilt=
uninstall=0
remove_instances=0
while (($#)); do
    case $1 in
    --prefix)
        (($# >= 2)) || { usage >&2; exit 2; }
        prefix=$2
        shift
        ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --no-modify-rc) modify_rc=0 ;;
    --binary)
        (($# >= 2)) || { usage >&2; exit 2; }
        prebuilt=$2
        shift
        ;;
    --uninstall) uninstall=1 ;;
    --remove-instances) remove_instances=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'install.sh: unknown option: %s\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$prefix" ]] || die "--prefix needs a directory"
# Absolute, so the rc block and messages do not depend on the current dir.
[[ "$prefix" == /* ]] || prefix="$PWD/$prefix"
prefix=${prefix%/}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bindir="$prefix/bin"
bin="$bindir/ai-sessctl"
state_dir="${AI_SESSIONS_HOME:-$HOME/.ai-sessions}"

# Completion file in the repo -> where it goes under PREFIX.
completion_src=(_ai-sessctl ai-sessctl.bash ai-sessctl.fish)
completion_dst=(
    "$prefix/share/zsh/site-functions/_ai-sessctl"
    "$prefix/share/bash-completion/completions/ai-sessctl"
    "$prefix/share/fish/vendor_completions.d/ai-sessctl.fish"
)

begin_marker="# >>> ai-sessions >>>"
end_marker="# <<< ai-sessions <<<"
nonl_note="(added a newline to the line above)"
created_note="(install.sh created this file)"

# Quote a word for sh/bash/zsh alike.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

on_path() {
    case ":$PATH:" in *":$bindir:"*) return 0 ;; esac
    return 1
}

# The rc block for shell $1 in file kind $2 (rc: ~/.zshrc, ~/.bashrc;
# login: ~/.bash_profile or ~/.profile, which sh reads too). No final
# newline: it goes through $(...). Every line is POSIX sh and a no-op when
# repeated: the bin dir joins PATH only when missing (so `ai-sessctl` works
# as typed, and re-sourcing adds no duplicate), zsh loads compinit only when
# nothing has (completion needs it), and the integration loads in
# interactive shells only.
rc_block() {
    local shell=$1 kind=${2:-rc} qdir qbin guard=
    qdir=$(shq "$bindir")
    qbin=$(shq "$bin")
    # shellcheck disable=SC2016 # expanded by the shell that reads the rc file
    [[ $kind == login ]] && guard='[ -n "${BASH_VERSION-}" ] && '
    printf '%s
' "$begin_marker"
    printf '%s
' "case \":\${PATH-}:\" in *:$qdir:*) ;; *) PATH=$qdir\"\${PATH:+:\$PATH}\"; export PATH ;; esac"
    if [[ $shell == zsh ]]; then
        printf '%s
' "(( \${+functions[compdef]} )) || { autoload -Uz compinit && compinit -i; }"
    fi
    # The integration: the copy of `ai-sessctl init` kept in the state dir
    # (no fork at shell start; it checks that it is current, else asks the
    # binary), sourced only when it and the state dir are the user's own.
    # shellcheck disable=SC2016 # expanded by the shell that reads the rc file
    local home='"${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}"' cache
    cache="${home%\"}/init.$shell\""
    printf '%s
' "case \$- in *i*) ${guard}[ -x $qbin ] && if [ -O $home ] && [ -O $cache ]; then . $cache $qbin; else eval \"\$($qbin init $shell)\"; fi ;; esac"
    printf '%s' "$end_marker"
}

# Rewrite rc file $1 so that it holds block $2 exactly once (in place of an
# old block, else appended), or no block when $2 is empty. Lines outside the
# markers are copied unchanged; the file is only written when it changes, and
# through `cat >` so that symlinked dotfiles and permissions are kept.
# Appending to a file without a final newline has to add one; the begin
# marker then says so, and removing that block takes the newline away again,
# so install + uninstall leaves the file byte-identical.
rc_update() {
    local rc=$1 block=$2 tmp nonl=0
    tmp="$(mktemp)"
    if [[ -f "$rc" ]]; then
        [[ -n "$(tail -c 1 "$rc")" ]] && nonl=1
        # Values via ENVIRON: awk -v would mangle backslashes in paths.
        # An existing begin line is kept as it is (it may carry the note).
        BEGIN_M=$begin_marker END_M=$end_marker NONL_M=$nonl_note BLOCK=$block \
            NONL=$nonl awk '
            BEGIN { begin = ENVIRON["BEGIN_M"]; end = ENVIRON["END_M"]
                    block = ENVIRON["BLOCK"]; body = block
                    sub(/^[^\n]*\n/, "", body) }
            index($0, begin) == 1 {
                if (!done && block != "") print $0 "\n" body
                done = 1; skipping = 1; next }
            skipping { if ($0 == end) skipping = 0; next }
            { print }
            END {
                if (!done && block != "") {
                    if (ENVIRON["NONL"] == 1) print begin " " ENVIRON["NONL_M"] "\n" body
                    else print block
                }
            }
        ' "$rc" >"$tmp"
        # awk ends every line with a newline. Drop the last one again when
        # the file had none and we did not append after it, or when removing
        # a final block whose marker notes that it added one.
        local had_block=0 trim=0
        grep -qxF -e "$begin_marker" -e "$begin_marker $nonl_note" "$rc" && had_block=1
        if ((nonl)) && [[ -z "$block" || $had_block -eq 1 ]]; then
            trim=1
        elif [[ -z "$block" && "$(tail -n 1 "$rc")" == "$end_marker" ]] &&
            grep -qxF "$begin_marker $nonl_note" "$rc"; then
            trim=1
        fi
        if ((trim)); then
            local trimmed
            trimmed="$(mktemp)"
            head -c "$(($(wc -c <"$tmp") - 1))" "$tmp" >"$trimmed"
            mv -f "$trimmed" "$tmp"
        fi
    else
        [[ -n "$block" ]] || { rm -f "$tmp"; return 1; }
        # Say that install made the file, so uninstall removes it again.
        printf '%s %s\n%s\n' "$begin_marker" "$created_note" "${block#*$'\n'}" >"$tmp"
    fi
    # A file install created holds nothing else once the block is gone.
    if [[ -z "$block" && -f "$rc" ]] && grep -qxF "$begin_marker $created_note" "$rc" &&
        [[ ! -s "$tmp" ]]; then
        rm -f "$tmp" "$rc"
        return 0
    fi
    if [[ -f "$rc" ]] && cmp -s "$tmp" "$rc"; then
        rm -f "$tmp"
        return 1 # unchanged
    fi
    cat "$tmp" >"$rc"
    rm -f "$tmp"
}

# rc files to touch, as "shell kind file" lines: existing ones, or the
# shell is installed. bash reads ~/.bashrc in interactive non-login shells
# only; a login shell (tmux, macOS Terminal, ssh) reads the first of
# ~/.bash_profile, ~/.bash_login, ~/.profile instead. That file gets the
# block too unless it already sources ~/.bashrc (Debian's ~/.profile does);
# with none of them, ~/.profile is created (not ~/.bash_profile, which would
# hide a ~/.profile made later).
rc_files() {
    if [[ -f "$HOME/.zshrc" ]] || command -v zsh >/dev/null 2>&1; then
        echo "zsh rc $HOME/.zshrc"
    fi
    if [[ -f "$HOME/.bashrc" ]] || command -v bash >/dev/null 2>&1; then
        echo "bash rc $HOME/.bashrc"
        local login=
        for f in .bash_profile .bash_login .profile; do
            if [[ -f "$HOME/$f" ]]; then
                login="$HOME/$f"
                break
            fi
        done
        login=${login:-$HOME/.profile}
        if ! sources_bashrc "$login"; then
            echo "bash login $login"
        fi
    fi
}

# Whether rc file $1 reads ~/.bashrc (a line outside our block, not a
# comment, naming .bashrc).
sources_bashrc() {
    [[ -f "$1" ]] || return 1
    BEGIN_M=$begin_marker END_M=$end_marker awk '
        index($0, ENVIRON["BEGIN_M"]) == 1 { skip = 1; next }
        skip { if ($0 == ENVIRON["END_M"]) skip = 0; next }
        /^[[:space:]]*#/ { next }
        /\.bashrc/ { found = 1 }
        END { exit !found }
    ' "$1"
}

# zsh's completion cache, which the zsh block's `compinit` writes when
# nothing else loads compinit; a note next to our completion file says
# install caused it, so uninstall removes it (and only then).
zcompdump="$HOME/.zcompdump"
zcompdump_note="$prefix/share/zsh/site-functions/.ai-sessions-zcompdump"

# Whether the user's ~/.zshrc loads compinit itself (outside our block).
zshrc_has_compinit() {
    [[ -f "$HOME/.zshrc" ]] || return 1
    BEGIN_M=$begin_marker END_M=$end_marker awk '
        index($0, ENVIRON["BEGIN_M"]) == 1 { skip = 1; next }
        skip { if ($0 == ENVIRON["END_M"]) skip = 0; next }
        /^[[:space:]]*#/ { next }
        /compinit/ { found = 1 }
        END { exit !found }
    ' "$HOME/.zshrc"
}

# Stops the `serve` processes of this binary (of any state home): they
# would go on serving from a deleted binary. SIGTERM lets them finish.
stop_servers() {
    local p pid exe args
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ $exe == "$bin" || $exe == "$bin (deleted)" ]] || continue
        args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        case " $args" in *" serve "* | *" serve") ;; *) continue ;; esac
        pid=${p#/proc/}
        kill -TERM "$pid" 2>/dev/null && did "stopped ai-sessctl serve (pid $pid)"
    done
}

# Removes the completion directories install made once they are empty (a
# directory holding anything else stays), never PREFIX/share itself.
remove_empty_dirs() {
    local f d
    for f in "${completion_dst[@]}"; do
        d=$(dirname "$f")
        while [[ $d == "$prefix/share/"* ]] && rmdir "$d" 2>/dev/null; do
            did "removed the empty $d"
            d=$(dirname "$d")
        done
    done
}

if ((uninstall)); then
    # Only this state home's instances: the engine is shared with other
    # users and homes (containers carry their home in the ai.home label).
    if ((remove_instances)); then
        if [[ -x "$bin" ]]; then
            echo "Removing the instances of $state_dir:"
            AI_SESSIONS_HOME="$state_dir" "$bin" rm --all --force || die "ai-sessctl rm --all --force failed; nothing was uninstalled"
        else
            die "--remove-instances needs $bin, which is missing"
        fi
    fi
    echo "Uninstalling ai-sessions from $prefix:"
    stop_servers
    if [[ -f "$zcompdump_note" ]]; then
        rm -f "$zcompdump_note" "$zcompdump" "$zcompdump.zwc"
        did "removed $zcompdump (zsh's completion cache, made by the ai-sessions block)"
    fi
    for f in "$bin" "$bindir/ai-session" "${completion_dst[@]}"; do
        if [[ -e "$f" || -L "$f" ]]; then
            rm -f "$f"
            did "removed $f"
        fi
    done
    remove_empty_dirs
    if ((modify_rc)); then
        for rc in "$HOME/.zshrc" "$HOME/.bashrc" "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do
            if [[ -f "$rc" ]] && rc_update "$rc" ""; then
                if [[ -e "$rc" ]]; then
                    did "removed the ai-sessions block from $rc"
                else
                    did "removed $rc (install created it)"
                fi
            fi
        done
    fi
    did "kept the state directory $state_dir (instances, logs, agent logins);"
    did "delete it yourself if you no longer need it: rm -rf $(shq "$state_dir")"
    if ((!remove_instances)); then
        home_label="$(cd "$state_dir" 2>/dev/null && pwd -P)" || home_label=$state_dir
        echo "Instances of this state home keep running (./install.sh --uninstall --remove-instances"
        echo "removes them first); remove their containers with:"
        echo "  docker rm -f \$(docker ps -aq --filter $(shq "label=ai.home=$home_label"))"
    fi
    exit 0
fi

if [[ -n "$prebuilt" ]]; then
    [[ -f "$prebuilt" && -x "$prebuilt" ]] || die "--binary $prebuilt is not an executable file"
    built=$prebuilt
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found. Install Rust with
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then open a new shell (or: source \"\$HOME/.cargo/env\") and run ./install.sh again."

    echo "Building ai-sessctl (cargo build --release --locked) ..."
    (cd "$repo" && cargo build --release --locked)
    built="$repo/target/release/ai-sessctl"
    [[ -x "$built" ]] || die "build finished but $built is missing"
fi

echo "Installing into $prefix:"
mkdir -p "$bindir"
# Copy then rename: replacing a binary that is running stays safe.
tmp_bin="$(mktemp "$bindir/.ai-sessctl.XXXXXX")"
cp "$built" "$tmp_bin"
chmod 0755 "$tmp_bin"
mv -f "$tmp_bin" "$bin"
did "$bin"
ln -sfn ai-sessctl "$bindir/ai-session"
did "$bindir/ai-session -> ai-sessctl"

for i in "${!completion_src[@]}"; do
    src="$repo/completions/${completion_src[$i]}"
    dst="${completion_dst[$i]}"
    [[ -f "$src" ]] || continue
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    chmod 0644 "$dst"
    did "$dst"
done

if ((modify_rc)); then
    # Before the block goes in: from now on our compinit may make the cache.
    if [[ ! -e "$zcompdump" ]] && ! zshrc_has_compinit && rc_files | grep -q '^zsh '; then
        mkdir -p "$(dirname "$zcompdump_note")" && : >"$zcompdump_note"
    fi
    while read -r shell kind rc; do
        if rc_update "$rc" "$(rc_block "$shell" "$kind")"; then
            did "$rc: added the ai-sessions block"
        else
            did "$rc: ai-sessions block already present"
        fi
    done < <(rc_files)
    on_path || did "new shells get $bindir on PATH (the block adds it)"
else
    did "rc files left alone (--no-modify-rc); add to your rc file:"
    on_path || did "  export PATH=$(shq "$bindir"):\"\$PATH\""
    did "  eval \"\$($(shq "$bin") init zsh)\"   (or: init bash)"
fi

echo
echo "Next: open a new shell (exec \"\$SHELL\"), cd into a project, and type: claude"
echo "  build the agent image first: ai-sessctl image build claude"
echo "  check the setup:             ai-sessctl doctor"
