// Forwarding header: chain_status is public API now (qblock/chain_status.h).
#pragma once

#include "qblock/chain_status.h"
