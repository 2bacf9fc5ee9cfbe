// Forwarding header: the driver-author API is public now (include/qblock/driver/), so that
// out-of-tree drivers find it too. In-tree drivers may keep including "block/driver.h".
#pragma once

#include "qblock/driver/driver.h"
#include "qblock/driver/uring.h"
