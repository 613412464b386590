# The ch05 lab (scripts/lab.sh ch05): with -DLAB=ch05 each student file below replaces its reference file
# in the `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/model/kv_cache_append.cpp kv_append_student.cpp)               # exercise 1: KV append
infer_lab_swap(common/src/cpu/attention_dispatch_cpu.cpp attention_student.cpp)   # exercise 2: cached attention
