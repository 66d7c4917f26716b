"""labtorch settings for every host. A group file (gpu.py, cpu.py, ...) or an inventory host
overrides any of them; an unknown ``torch_*`` key or a bad value stops the run before any host is
touched, naming this file and the key.

Versions are text: quote them ("2.3", "3.10"). Unquoted, Python and pyinfra's --data read 3.10 as
the number 3.1, so a number is refused; on the command line: --data 'torch_python="3.10"'."""

# The PyTorch release to pin: "2.3.1", or a release line such as "2.9" (its newest patch), quoted.
torch_release = "2.3.1"

# "conda" (an env in the host's conda) or "pip" (a venv made with the host's python3).
torch_installer = "conda"

# "auto" picks the newest CUDA build that the driver runs and that has kernels for every GPU;
# "cpu" or a CUDA variant such as "cu121" fixes it (the host fails if it cannot run it).
torch_variant = "auto"

# "auto" (default): "strict" when a build the driver supports in full has kernels for every GPU;
# otherwise the newest build the driver runs under CUDA minor-version compatibility with SASS for
# every GPU (no PTX JIT, which minor compatibility cannot do), with a warning that names the
# driver needed for full support; otherwise the CPU build or a refusal, as "strict" decides.
# "strict": the driver's CUDA version must be at least the build's; "minor": CUDA minor-version
# compatibility (a 12.x build on any driver >= 525.60.13, with a limited feature set).
torch_driver_policy = "auto"

# The env's Python, e.g. "3.11"; None: the newest the release supports (conda), or the host's
# python3 (pip).
torch_python = None

# The env's name: a conda env under the conda root's envs/, or a venv under torch_venv_root. One
# plain name (letters, digits, _ . -, not starting with . or -): "..", "." or a path, which would
# put the env outside that directory (".." of envs/ is the conda root, the base env), is refused.
# torch_venv_root: an absolute directory, without . or .. in it.
torch_env = "torch"
torch_venv_root = "/opt/labtorch/venvs"

# conda channel: "auto" (conda-forge when it has the release, else the old pytorch channel),
# "pytorch" or "conda-forge".
torch_conda_channel = "auto"

# Also install a CUDA toolkit with nvcc that matches the build (for compiling extensions).
torch_toolkit = False

# The mirror, by name from labtorch/data/mirrors.yaml ("tuna", "bfsu", "upstream", ...), or any
# base URL laid out like TUNA (anaconda/pkgs, anaconda/cloud, pypi/web/simple): a site cache.
torch_mirror = "tuna"
torch_mirror_url = None

# Where wheels of non-default variants come from (TUNA has no PyTorch wheel index): a mirror
# name ("aliyun", "nju", "upstream") or a flat find-links URL containing {variant}, its only
# placeholder (write a literal brace twice: {{ }}).
torch_wheel_mirror = "aliyun"
torch_wheel_mirror_url = None

# Mirrors to install the same pins from when an install from torch_mirror fails (TUNA answers 403
# to address ranges it flags for bulk downloads, and has dropped whole mirrors without notice):
# names ("bfsu" is TUNA's sister site; "nju" also serves the PyTorch wheels) or TUNA-layout base
# URLs, tried in order. A fallback that would pin anything else is left out, with a warning.
# A fallback URL is taken to be laid out like torch_mirror_url: when torch_wheel_mirror_url lies
# under torch_mirror_url, the fallback's wheel page is the same path under the fallback's URL
# (pip tries it first, then the fallback's PyPI with the first wheel page). [] turns fallbacks off.
torch_fallback_mirrors = ["bfsu"]

# The condarc labtorch owns: "auto" ("system" when the SSH user is root, else "user"), "system"
# (the conda root's .condarc), "user" (~/.condarc of the SSH user) or an absolute path. The
# user's original is kept once as <file>.labtorch-backup.
torch_condarc_scope = "auto"

# The pip.conf labtorch owns: "env" (the env's own pip.conf), "user", "global" or a path.
torch_pip_scope = "env"

# When to run the probe (torch imported with the env's python, a matmul on every GPU): "always",
# or "on-change": again only when the env's packages or the loaded driver changed since the last
# probe, whose result is kept in the env (a no-op rerun then costs one command per host).
torch_probe = "on-change"

# A host without conda (torch_installer = "conda"): True installs Miniforge from torch_mirror's
# Miniforge release (then each fallback's; GitHub's releases only when none of them carries it),
# its sha256 checked against the release's published .sha256 before it runs, in batch mode into
# /opt/conda as root or ~/miniforge3 otherwise; a conda that exists is never touched, and a failed
# download, checksum or install leaves nothing behind. False: such a host fails with the reason.
torch_conda_bootstrap = True

# How many past states of each env to keep (in <env>/.labtorch-history): before the deploy changes
# an env, it records the env's exact state (conda's explicit list with md5s and its revision
# number, or a venv's files with their sha256), with the time and the run, for `labtorch rollback`.
# 0 records none.
torch_env_history = 5

# A deploy that will change a host's env first takes a lock beside it (<env>.labtorch-lock), so two
# runs at once cannot corrupt it; the second waits this many seconds, then fails that host naming
# the holder. A lock left by a run of this controller that died, or older than 6 hours, is taken
# over.
torch_run_lock_wait = 600

# Locks (README "Locks"): hosts whose plans agree share one lock, solved once on the controller
# (`labtorch lock INVENTORY`), installed with no solve on the host and every file's hash checked.
# "auto": the committed lock of the host's class when its inputs still match, else the class is
# locked during the run (once, however many hosts) and written; "frozen": only committed locks,
# a host whose class has none, or a stale one, fails before anything changes on it; "off": each
# host solves for itself. torch_lock_dir: the lock directory on the controller (relative to
# where pyinfra runs); labtorch lock writes there unless given --output.
torch_lock = "auto"
torch_lock_dir = "locks"

# The lab cache (README "Lab cache"): one host runs nginx, from its distribution's packages, as a
# caching proxy of torch_mirror (with torch_fallback_mirrors as backup upstreams for 403, 5xx and
# timeouts), and every host installs through it, so each file crosses the campus link once. The
# deploy configures the cache host before any host installs. A host that cannot reach the cache
# installs straight from the mirror, then its fallbacks, and the report says why.
# torch_cache_host: "auto" (the one host of the inventory's group `cache`, if it has one), "off",
# or the inventory name of the host. The other keys are read from the cache host's own data:
# torch_cache_port and torch_cache_bind, where nginx listens (an IP address; "0.0.0.0" is every
# IPv4 address of the host: set the lab network's address to listen there only);
# torch_cache_url, how the other hosts reach it (None: http://<the host's ssh_hostname or
# name>:<port>); torch_cache_dir and torch_cache_max_size, the cache's directory and its disk
# budget (nginx's size syntax: "50g"); torch_cache_index_ttl, how long an index (repodata, a PyPI
# page, a wheel page) is served before the mirror is asked again ("10m"); package files are kept.
torch_cache_host = "auto"
torch_cache_port = 3143
torch_cache_bind = "0.0.0.0"
torch_cache_url = None
torch_cache_dir = "/var/cache/labtorch-cache"
torch_cache_max_size = "50g"
torch_cache_index_ttl = "10m"
