# `from ringpool cimport ...`: run native work on a ringpool.Pool from Cython
# code without touching a Python object. Get the engine once, with the GIL
# (keep the Pool alive and open while you use it), then call the nogil
# functions; native function signatures are those of ringpool.h. Compile with
# include_dirs=ringpool.get_include_dirs(). Example: README, "From Cython".
from ringpool._rp cimport (
    RP_CANCELLED, RP_ETIMEDOUT, RP_OK, RP_STATUS_NOT_RUN, rp_batch, rp_kernel_fn, rp_native_fn,
    rp_pool, rp_task_ctx,
)
from ringpool._core cimport (
    native_batch_release, native_batch_status, native_batch_wait, parallel_for_nogil, pool_handle,
    submit_native_many_nogil, submit_native_nogil,
)
