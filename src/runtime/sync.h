// Forwarding header: AsyncMutex and WaitQueue are public API now (qblock/sync.h).
#pragma once

#include "qblock/sync.h"
