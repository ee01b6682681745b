# Clock constraint for the generated RTL (SDC), written beside the Verilog by `python -m hw.build`.
# Target: 200 MHz (200 MHz by default, the clock the default design meets on sky130_fd_sc_hd typical; set with --set clock_mhz=...).
create_clock -name clk -period 5.000 [get_ports clk]
set_input_delay  -clock clk 1.000 [remove_from_collection [all_inputs] [get_ports {clk rst}]]
set_output_delay -clock clk 1.000 [all_outputs]
set_false_path -from [get_ports rst]
