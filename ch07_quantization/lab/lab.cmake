# The ch07 lab (scripts/lab.sh ch07): with -DLAB=ch07 each student file below replaces its reference file
# in the `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/core/q8_0_codec.cpp q8_0_student.cpp)                # exercise 1: Q8_0 quantize / dequantize
infer_lab_swap(common/src/cpu/quant_dot_q8_0_cpu.cpp dot_q8_0_student.cpp)     # exercise 2: the int8 block dot product
