"""The simulated lab: hosts over real SSH, a mirror laid out like TUNA, and stand-ins for conda and
torch. It exists for the demo, the integration tests and the benchmarks; it is not part of what
labtorch installs on a real fleet.
"""
