"""An example lab fleet: edit the host names and SSH settings for your lab.

Groups are targeted with ``--limit gpu`` or ``--limit cpu``; any host can override a setting.
"""

_ssh = {"ssh_user": "root", "ssh_key": "~/.ssh/id_ed25519"}

gpu = [
    ("gpu-01.lab.example.edu.cn", {**_ssh}),
    ("gpu-02.lab.example.edu.cn", {**_ssh}),
    # An old Pascal box whose users need nvcc for their extensions.
    ("gpu-03.lab.example.edu.cn", {**_ssh, "torch_toolkit": True}),
]

cpu = [
    ("login-01.lab.example.edu.cn", {**_ssh}),
]
