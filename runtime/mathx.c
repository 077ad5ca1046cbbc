#include "mathx.h"

#define TL_MATHX_FN
#define TL_MATHX_STATIC static
#include "mathx_impl.h"
