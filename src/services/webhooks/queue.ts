// The webhook-deliveries queue's message: one delivery (its row in webhook_deliveries holds the
// payload, the endpoint and the attempts so far).
import { z } from "zod";

export const WebhookDeliveryJobSchema = z.strictObject({ deliveryId: z.string().min(1).max(64) });
export type WebhookDeliveryJob = z.infer<typeof WebhookDeliveryJobSchema>;

/** The producer side of the queue, as services use it. */
export type WebhookQueue = Pick<Queue<WebhookDeliveryJob>, "send" | "sendBatch">;
