# The ch06 lab (scripts/lab.sh ch06): with -DLAB=ch06 the student file below replaces its reference file in the
# `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/engine/block_manager_alloc.cpp block_alloc_student.cpp)   # the block allocator
