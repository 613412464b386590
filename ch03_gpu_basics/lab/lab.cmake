# The ch03 lab (scripts/lab.sh ch03): with -DLAB=ch03 each student file below replaces its reference file
# in the `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/cpu/rope_cpu.cpp rope_student.cpp)              # exercise 1: RoPE
infer_lab_swap(common/src/engine/sampling_filters.cpp top_p_student.cpp)       # exercise 2: top-p (nucleus)
