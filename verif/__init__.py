"""cocotb testbenches (one module per block) and the simulator runner helpers."""
