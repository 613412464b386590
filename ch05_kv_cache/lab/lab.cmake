# The ch05 lab (scripts/lab.sh ch05): with -DLAB=ch05 each student file below replaces its reference file
# in the `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/cpu/kv_store_cpu.cpp kv_store_student.cpp)               # exercise 1: KV store
infer_lab_swap(common/src/cpu/attention_dispatch_cpu.cpp attention_student.cpp)   # exercise 2: cached attention
